"""docs/python-api.md runs as written: its code blocks, in order, in a folder holding a small
cut of the example data (the doc's paths are relative to the repository's root)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, REPO

DOC = REPO / "docs" / "python-api.md"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The doc's relative paths, with 40 pool rows and the whole 20-row target sample: the
    offline tagger and tree take seconds on so few."""
    (tmp_path / "examples").mkdir()
    rows = (EXAMPLES / "self_instruct_alpaca.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "examples" / "self_instruct_alpaca.jsonl").write_text(
        "\n".join(rows[:40]) + "\n", encoding="utf-8")
    shutil.copy(EXAMPLES / "target_coding_math.jsonl", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.startswith("TAGTREE_") or name == "OPENAI_BASE_URL":
            monkeypatch.delenv(name)
    return tmp_path


def test_the_python_api_doc_runs_end_to_end(workdir):
    import tagtree
    from tagtree.io.store import Store

    blocks = code_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 4, "the doc's examples went missing"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the doc's own code
    ns = namespace
    assert isinstance(ns["pool"], tagtree.IngestResult) and ns["pool"].loaded == 40
    assert ns["target"].loaded == 20
    assert isinstance(ns["tags"], tagtree.AnnotateResult) and ns["tags"].ok > 30
    assert isinstance(ns["tree"], tagtree.TreeResult) and ns["tree"].tree_version.startswith("t")
    assert ns["grounded"].instances >= 50 and ns["grounded"]["drift"] == ns["grounded"].drift
    assert isinstance(ns["selection"], tagtree.SampleResult)
    assert ns["selection"].selected == 2 and ns["selection"].kl_after is not None  # 5% of 40
    lines = Path(ns["exported"].files[0]).read_text(encoding="utf-8").splitlines()
    assert len(lines) == ns["selection"].selected
    assert Path(ns["page"].path).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    result = ns["result"]
    assert isinstance(result, tagtree.CurateResult)
    assert result.tree_version == ns["tree"].tree_version  # no drift: the tree is reused
    summary = json.loads(Path(result.outputs["summary"]).read_text(encoding="utf-8"))
    assert summary["curate"]["run_id"] == result.run_id
    assert Path(result.outputs["report"]).is_file()
    with Store("out/notebook.duckdb", read_only=True) as store:
        statuses = dict((r[0], r[2]) for r in store.runs())
        assert statuses[result.run_id] == "completed"
        assert statuses[ns["selection"].run_id] == "completed"
        # the fake embedder's vectors sit beside the real model's, under its own fingerprint
        assert ns["faked"].embedder == "hash-32@1"
        assert ns["faked"].embedded_new == ns["faked"].tags > 0
        assert store.tags_missing_embeddings("hash-32@1", store.tag_frequencies()[0]) == []


def test_import_tagtree_loads_no_stage_and_no_prefect():
    import subprocess
    import sys

    code = ("import sys, tagtree; print(sorted(m for m in sys.modules if m.startswith("
            "('prefect', 'duckdb', 'tagtree.stages', 'numpy'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout.strip()
    assert out == "[]"
    code = "import tagtree, sys; tagtree.curate; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout.strip()
    assert out == "False"


def test_curate_without_prefect_from_the_command_line(workdir):
    """`tagtree curate --no-prefect` (what an installed package without the Prefect project
    runs) gives the same outputs as the flow: selection, manifest, report, summary.json."""

    from typer.testing import CliRunner

    from tagtree.cli import app

    res = CliRunner().invoke(app, ["curate", "examples/self_instruct_alpaca.jsonl", "--target",
                                   "examples/target_coding_math.jsonl", "--db", "c.duckdb",
                                   "--out", "out/c/", "--no-prefect"])
    assert res.exit_code == 0, res.output
    assert "(no Prefect)" in res.output
    summary = json.loads((workdir / "out" / "c" / "summary.json").read_text(encoding="utf-8"))
    assert summary["datasets"] == ["self_instruct_alpaca"]
    assert summary["curate"]["sample"]["selected"] == 2
    assert {"selection.jsonl", "selection.manifest.json", "report.html"} <= {
        p.name for p in (workdir / "out" / "c").iterdir()}
