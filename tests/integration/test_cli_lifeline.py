"""A SIGKILLed `tagtree curate` leaves nothing running: Prefect's ephemeral API server (and any
other helper it started) is stopped by the lifeline watchdog (tagtree/cli/lifeline.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import EXAMPLES, REPO

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read()
    except OSError:
        return {}
    return dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper is not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _marked(token: str) -> list[int]:
    return [int(p) for p in os.listdir("/proc")
            if p.isdigit() and _environ(int(p)).get("TAGTREE_LIFELINE") == token]


def _server_of(pid: int) -> tuple[int, str | None] | None:
    """The ephemeral Prefect server started by ``pid``, and the lifeline token it carries."""
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and "uvicorn" in _cmdline(int(p)):
            return int(p), _environ(int(p)).get("TAGTREE_LIFELINE")
    return None


def test_sigkilled_curate_leaves_no_ephemeral_server(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_API_URL", "TAGTREE_LIFELINE"))}
    env |= {"PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    cli = subprocess.Popen(
        [sys.executable, "-m", "tagtree", "curate", str(EXAMPLES / "mt_bench.jsonl"),
         "--db", str(tmp_path / "store.duckdb"), "--out", str(tmp_path / "out")],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = None
    try:
        deadline = time.monotonic() + 120
        while found is None and time.monotonic() < deadline and cli.poll() is None:
            found = _server_of(cli.pid)
            time.sleep(0.2)
        assert found, "the ephemeral server never started (or curate finished first)"
        server, token = found
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait(10)
        deadline = time.monotonic() + 20
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(server), "the ephemeral server outlived its tagtree curate"
        left = _marked(token) if token else []
        assert not left, [(p, _cmdline(p)) for p in left]
    finally:
        if cli.poll() is None:
            cli.kill()
        if found and _alive(found[0]):  # do not leave an orphan behind a failed test
            os.kill(found[0], signal.SIGKILL)
