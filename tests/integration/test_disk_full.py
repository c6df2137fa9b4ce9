"""A full disk (issue 16): a one-line message and exit 2, the previous outputs untouched, no temp
files left. The full disk is a real 1 MB tmpfs (needs root to mount; skipped otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tagtree.errors import TagtreeError
from tagtree.io.atomic import atomic_open, write_text_atomic

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def full_dir(tmp_path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("cannot mount a tmpfs here")
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def tagtree(*args, cwd=None):
    exe = str(Path(sys.executable).with_name("tagtree"))
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env=os.environ | {"PYTHONPATH": str(REPO)}, cwd=cwd)


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out" / "report.html"
    write_text_atomic(target, "GOOD")
    assert target.read_text() == "GOOD" and (target.stat().st_mode & 0o777) == 0o644
    with pytest.raises(RuntimeError), atomic_open(target, "w") as fh:
        fh.write("half a rep")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "GOOD"
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temp file left


def test_temporary_files_of_killed_writers_are_swept(tmp_path):
    """A SIGKILL between the write and the rename leaves ``.report.html.<host>.<pid>.*.tmp``:
    the next write of that file removes it when its owner is gone, never a live writer's."""
    import socket

    from tagtree.io.atomic import _temp_prefix

    target = tmp_path / "report.html"
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = tmp_path / f"{_temp_prefix(target, gone.pid)}abc123.tmp"
    live = tmp_path / f"{_temp_prefix(target, os.getppid())}def456.tmp"
    other = tmp_path / f".other.html.{socket.gethostname()}.{gone.pid}.x.tmp"
    for p in (dead, live, other):
        p.write_text("half")
    write_text_atomic(target, "GOOD")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [target.name, live.name, other.name])


def test_report_on_a_full_disk_keeps_the_previous_report(full_dir, report_db):
    previous = full_dir / "report.html"
    previous.write_text("GOOD REPORT")
    # The report is ~0.1 MB: fill the 1 MB disk to within 16 KB first.
    st = os.statvfs(full_dir)
    (full_dir / "filler").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - 16_384))
    proc = tagtree("report", "--db", report_db, "--out", previous)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"error: disk full writing {previous}") and \
        proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert previous.read_text() == "GOOD REPORT"
    assert sorted(p.name for p in full_dir.iterdir()) == ["filler", "report.html"]


def test_ingest_into_a_store_on_a_full_disk_is_one_line(full_dir):
    proc = tagtree("ingest", REPO / "examples" / "self_instruct_alpaca.jsonl",
                   REPO / "examples" / "mt_bench.jsonl", "--db", full_dir / "s.duckdb")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: disk full") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_disk_full_is_a_user_error_not_a_retry():
    import errno

    from tagtree.errors import user_message

    assert "disk full" in user_message(OSError(errno.ENOSPC, "No space left on device"))
    assert user_message(RuntimeError('Could not write file "x": No space left on device'))
    assert user_message(TagtreeError("bad")) == "bad"
    assert user_message(RuntimeError("a bug")) is None
