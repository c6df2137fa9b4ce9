"""`tagtree curate` on user errors (issue 16): one line on stderr, exit 2, no Prefect traceback,
and a dead endpoint reported as such (it used to end with "run `tagtree annotate` first")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.hostile_files import make
from tests.support.openai_server import refused_url

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "mt_bench.jsonl"


def curate(tmp_path, *args):
    tagtree = str(Path(sys.executable).with_name("tagtree"))
    env = os.environ | {"PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / "ph"),
                        "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([tagtree, "curate", *map(str, args), "--db", str(tmp_path / "s.duckdb"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo", "symlink_loop"])
def test_unusable_input_is_one_line_before_prefect_starts(kind, tmp_path):
    case = make(kind, tmp_path)
    proc = curate(tmp_path, case.path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert case.message in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "ph").exists()  # refused before any flow run


@pytest.mark.slow
@pytest.mark.parametrize("case", ["empty", "dead_endpoint", "bad_target"])
def test_errors_inside_the_flow_are_one_line_too(case, tmp_path):
    if case == "empty":
        (tmp_path / "empty.jsonl").write_bytes(b"")
        args, expected = [tmp_path / "empty.jsonl"], "error: nothing loaded"
    elif case == "dead_endpoint":
        url = refused_url()
        args = [EXAMPLE, "--llm-base-url", url, "--llm-model", "m"]
        expected = f"error: LLM endpoint {url} is unreachable: connection refused"
    else:
        args = [EXAMPLE, "--target", tmp_path / "nowhere.jsonl"]
        expected = "error: input file not found:"
    proc = curate(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith(expected) and proc.stderr.count("\n") == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "tagtree annotate` first" not in proc.stderr
