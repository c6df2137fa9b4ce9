"""A lifeline for commands that start helper processes (Prefect's ephemeral API server, a local
LLM server, Dask workers): when the command dies, even by SIGKILL, they are stopped too.

``hold()`` marks this process's environment with a token that every child inherits and starts a
small watchdog child that checks twice a second whether its parent is still this process (a
dead parent's children are handed to another). Once this process is gone, the watchdog
terminates (and after a grace period kills) every process whose environment carries the token.
Linux only (it reads /proc); elsewhere a no-op.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

ENV = "TAGTREE_LIFELINE"

_WATCHDOG = r"""
import os, signal, sys, time
token, holder = sys.argv[1].encode(), int(sys.argv[2])
while os.getppid() == holder:  # the holder is alive
    time.sleep(0.5)
def marked():
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if b"TAGTREE_LIFELINE=" + token + b"\0" in fh.read() + b"\0":
                    found.append(int(pid))
        except OSError:
            pass
    return found
for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
    pids = marked()
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    deadline = time.monotonic() + wait
    while pids and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = marked()
    if not pids:
        break
"""

_held: subprocess.Popen | None = None


def hold() -> str | None:
    """Start the watchdog once per process; returns the token (None where unsupported)."""
    global _held
    if not sys.platform.startswith("linux"):
        return None
    if _held is not None:
        return os.environ.get(ENV)
    token = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != ENV}
    _held = subprocess.Popen([sys.executable, "-c", _WATCHDOG, token, str(os.getpid())],
                             stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    os.environ[ENV] = token  # inherited by every process started from now on
    return token


def exit_on_sigterm() -> None:
    """SIGTERM ends the command like Ctrl-C does (flows are marked, atexit handlers stop the
    ephemeral server) instead of killing it on the spot."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
