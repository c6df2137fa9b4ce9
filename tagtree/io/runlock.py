"""One writer per store: a run lock next to the DuckDB file, and snapshots for readers.

``run_lock(db, command)`` is held by every command that writes a store (``ingest``,
``annotate``, ``tree build``, ``sample``, ``curate``...) for its whole run, so two curates
cannot interleave between stages (DuckDB's own lock is only held while a connection is open,
and a flow opens one per task). It is an ``flock`` on ``<db>.lock``, released by the kernel when
the process ends however it ends: a killed run never leaves a stale lock. A second writer is
refused at once with who holds the store and since when.

``holder(db)`` says who holds it, for messages; read-only commands open a snapshot of the store
while it is being written (see ``StoreBase``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tagtree.errors import StoreBusy

_HELD: dict[str, list[int]] = {}  # lock path -> [fd, holds], for this process (re-entrant)


def lock_path(db: str | Path) -> Path:
    return Path(f"{Path(db).resolve()}.lock")


def holder(db: str | Path) -> str | None:
    """'`tagtree curate` (pid 123 on host, since 2026-12-01 21:40:02 UTC)' while a run holds
    the store's lock, else None."""
    path = lock_path(db)
    if not path.exists():
        return None
    try:
        with open(path) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                info = json.loads(Path(path).read_text() or "{}")
                since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.get("since", 0)))
                return (f"`{info.get('command', 'tagtree')}` (pid {info.get('pid', '?')} on "
                        f"{info.get('host', '?')}, since {since})")
            fcntl.flock(fh, fcntl.LOCK_UN)
    except (OSError, ValueError):
        return None
    return None


@contextlib.contextmanager
def run_lock(db: str | Path, command: str | None = None) -> Iterator[None]:
    """Hold the store's run lock for the block; TagtreeError if another process holds it."""
    if str(db) == ":memory:":
        yield
        return
    acquire(db, command)
    try:
        yield
    finally:
        release(db)


def acquire(db: str | Path, command: str | None = None) -> None:
    """Take (or, in a process that holds it, re-enter) the store's run lock."""
    if str(db) == ":memory:":
        return
    path = lock_path(db)
    if str(path) in _HELD:  # this process holds it already: a flow's tasks, nested stores
        _HELD[str(path)][1] += 1
        return
    if _inherited(path):  # a worker process of the run that holds it (a Dask/Ray cluster)
        _HELD[str(path)] = [-1, 1]
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        who = holder(db) or "another run"
        raise StoreBusy(f"store {db} is in use: {who} is writing it. Wait for it to finish "
                           "(read-only commands such as `tagtree stats` work meanwhile), stop "
                           "it, or use another --db") from None
    command = command or "tagtree " + " ".join(os.path.basename(a) if i == 0 else a
                                               for i, a in enumerate(sys.argv[1:3]))
    info = {"command": command.strip(), "pid": os.getpid(), "host": socket.gethostname(),
            "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    _HELD[str(path)] = [fd, 1]
    # Processes this run starts (local Dask/Ray workers running its tasks) inherit the hold.
    os.environ[_ENV] = f"{os.getpid()}:{path}"


_ENV = "TAGTREE_RUN_LOCK_HOLDER"


def _inherited(path: Path) -> bool:
    """True in a descendant of the process holding ``path``'s lock: the environment names it,
    and that process is still alive and still the lock's recorded holder."""
    pid, _, held = os.environ.get(_ENV, "").partition(":")
    if held != str(path) or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return False
    return info.get("pid") == int(pid)


def release(db: str | Path) -> None:
    """Leave the lock; the last hold of this process unlocks it."""
    if str(db) == ":memory:":
        return
    key = str(lock_path(db))
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    _HELD.pop(key, None)
    if held[0] < 0:  # inherited from the holding run: nothing of ours to unlock
        return
    if os.environ.get(_ENV, "").endswith(":" + key):
        os.environ.pop(_ENV, None)
    with contextlib.suppress(OSError):
        fcntl.flock(held[0], fcntl.LOCK_UN)
    os.close(held[0])
