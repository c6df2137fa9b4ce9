"""scripts/ui_screenshot.py against a real Prefect server and UI in headless Chromium."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's chromium (apt-get install chromium)")
def test_screenshot_of_a_completed_run(prefect_server, tmp_path):
    env = prefect_server["env"] | {"TAGTREE_DB": str(tmp_path / "ui.duckdb")}
    script = [sys.executable, str(REPO / "scripts" / "ui_screenshot.py"),
              "--ui", prefect_server["ui"], "--flow", "curate"]
    # No run yet of this flow name: the script must fail, not save an empty page.
    missing = subprocess.run(script[:-1] + ["no-such-flow", "--out", str(tmp_path / "x.png")],
                             env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no Completed run" in missing.stderr
    unknown = subprocess.run(script + ["--flow-run-id", str(uuid.uuid4()), "--timeout", "15",
                                       "--out", str(tmp_path / "y.png")],
                             env=env, capture_output=True, text=True, timeout=180)
    assert unknown.returncode == 1, unknown.stdout + unknown.stderr
    assert not (tmp_path / "y.png").exists()

    curate = subprocess.run(
        [str(Path(sys.executable).with_name("tagtree")), "curate",
         str(REPO / "examples" / "self_instruct_alpaca.jsonl")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert curate.returncode == 0, curate.stderr
    out = tmp_path / "run.png"
    shot = subprocess.run(script + ["--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=180)
    assert shot.returncode == 0, shot.stdout + shot.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
