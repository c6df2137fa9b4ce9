"""Output files (report, selection, manifest, tree export) written atomically, disk full named.

``atomic_path(path)`` gives a temporary path in the same directory; when the block ends without
an error the file is flushed to disk and renamed over ``path`` (``os.replace``: a reader sees
the old file or the new one, never half of one). On any error the temporary file is removed
and the old file is left as it was; running out of space becomes a ``TagtreeError`` naming the
file. ``write_text_atomic`` / ``write_bytes_atomic`` / ``atomic_open`` build on it.

``sweep_dead_dirs`` removes the temporary directories (ingest shards, reader snapshots) that a
killed process left: each holds an ``owner`` file naming its host and pid.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tagtree.errors import TagtreeError, disk_full


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _sweep_dead_temps(path)
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        _raise_for(exc, path)
        raise TagtreeError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.chmod(tmp, mode)  # mkstemp makes 0600 files: give the usual permissions
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())  # on disk before the rename, or a crash leaves an empty file
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        _raise_for(exc, path)
        raise


def _temp_prefix(path: Path, pid: int | None = None) -> str:
    """``.report.html.<host>.<pid>.``: a killed writer's temporary file names its owner."""
    return f".{path.name}.{socket.gethostname()}.{os.getpid() if pid is None else pid}."


def _sweep_dead_temps(path: Path) -> None:
    """Remove the temporary files of ``path`` that killed writers on this host left (a SIGKILL
    between the write and the rename)."""
    head = f".{path.name}.{socket.gethostname()}."
    for tmp in path.parent.glob(f"{glob.escape(head)}*.tmp"):
        pid = tmp.name[len(head):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _raise_for(exc: BaseException, path: Path) -> None:
    if disk_full(exc):
        raise TagtreeError(f"disk full writing {path}: no space left on the device; the "
                           "previous file (if any) is unchanged. Free space or write elsewhere "
                           "(--out), then re-run") from None


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", encoding: str | None = None
                ) -> Iterator[IO]:
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding) as fh:
        yield fh


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


OWNER_FILE = "owner"  # "<host> <pid>" of the process that made a temporary directory


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_dead_dirs(root: str | Path, prefix: str, unowned_after_s: float) -> list[str]:
    """Remove the directories ``root/prefix*`` whose owner process on this host is gone, or,
    without a readable owner file, older than ``unowned_after_s``. A live process's directory
    is never touched. Returns what was removed."""
    removed = []
    for d in Path(root).glob(f"{prefix}*"):
        if not d.is_dir() or d.is_symlink():
            continue
        try:
            host, pid = (d / OWNER_FILE).read_text().split()
            stale = host == socket.gethostname() and not _alive(int(pid))
        except (OSError, ValueError):
            try:
                stale = time.time() - d.stat().st_mtime > unowned_after_s
            except OSError:
                continue
        if stale:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
    return removed
