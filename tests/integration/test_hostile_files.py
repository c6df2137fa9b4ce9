"""Hostile input files (issue 16), table-driven from tests/support/hostile_files.py: each case is
either quarantined (the file is read, bad rows go to quarantine with a reason, every good row is
loaded) or refused (exit 2, one line naming the file and what to do, nothing loaded)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tagtree.cli import app
from tagtree.errors import TagtreeError
from tagtree.io.store import Store
from tests.support.hostile_files import KINDS, make

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_file(kind, tmp_path):
    if kind == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads any file")
    case = make(kind, tmp_path)
    db = str(tmp_path / "store.duckdb")
    result = CliRunner().invoke(app, ["ingest", str(case.path), "--db", db])
    if case.outcome == "refuse":
        assert isinstance(result.exception, TagtreeError), (result.output, result.exception)
        message = str(result.exception)
        assert case.message in message and "\n" not in message, message
        if kind not in ("empty",):
            assert str(case.path) in message  # names the file
        if os.path.exists(db):
            with Store(db, read_only=True) as store:
                assert store.scalar("SELECT count(*) FROM instances") == 0
        return
    assert result.exit_code == 0, (result.output, result.exception)
    with Store(db, read_only=True) as store:
        loaded = store.scalar("SELECT count(*) FROM instances")
        quarantined = store.rows("SELECT reason, message, source_line FROM quarantine")
    assert loaded == case.good  # every good row kept
    assert {r[0] for r in quarantined} == case.reasons
    if case.message:
        assert any(case.message in r[1] for r in quarantined), quarantined
    assert all(r[2] is not None and r[2] >= 1 for r in quarantined)  # a line to look at


def test_a_fifo_is_refused_at_once_not_read_forever(tmp_path):
    """The real command on a named pipe nobody writes to: it used to block in open() forever."""
    case = make("fifo", tmp_path)
    tagtree = str(Path(sys.executable).with_name("tagtree"))
    started = time.monotonic()
    proc = subprocess.run([tagtree, "ingest", str(case.path), "--db", str(tmp_path / "s.db")],
                          capture_output=True, text=True, timeout=60,
                          env=os.environ | {"PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and time.monotonic() - started < 30
    assert proc.stderr.strip() == (f"error: {case.path} is not a regular file but a FIFO (named "
                                   "pipe): reading it could block or never end; save the data "
                                   "to a file and pass that")


def test_truncated_gzip_keeps_every_complete_line(tmp_path):
    import zlib

    case = make("gzip_truncated", tmp_path)
    decoded = zlib.decompressobj(31).decompress(case.path.read_bytes())
    complete = decoded.count(b"\n")
    assert 0 < complete == case.good < 2000
    db = str(tmp_path / "s.duckdb")
    assert CliRunner().invoke(app, ["ingest", str(case.path), "--db", db]).exit_code == 0
    with Store(db, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM instances") == complete
        assert store.scalar("SELECT max(source_line) FROM instances") == complete


def test_gunzip_reads_members_padding_and_names_like_gzip(tmp_path):
    import gzip

    from tagtree.io.readers import _open_binary

    data = [os.urandom(300_000), b"second member\n", b""]
    path = tmp_path / "multi.gz"
    path.write_bytes(b"".join(gzip.compress(d) for d in data) + b"\0" * 7)
    with _open_binary(path) as fh:
        assert fh.read() == b"".join(data)
    named = tmp_path / "named.gz"
    with open(named, "wb") as raw, \
            gzip.GzipFile(filename="inner name.txt", fileobj=raw, mode="wb") as gz:
        gz.write(b"a\nb\n")
    with _open_binary(named) as fh:
        assert fh.read() == b"a\nb\n"


KILLED_INGEST = """
import sys
import tagtree.io.ingest as ingest
from tagtree.io.store import Store
ingest.PARALLEL_MIN_BYTES = 1 << 20  # shard this small file, as a big one would be
ingest.CHUNK_BYTES = 64 << 10
with Store(sys.argv[1]) as store:
    ingest.ingest_files(store, [sys.argv[2]], workers=2, batch_rows=1000)
"""


def test_a_killed_parallel_ingest_leaves_no_shards_after_the_next_run(tmp_path):
    import json
    import signal

    from tagtree.io.ingest import SHARD_PREFIX, ingest_files
    from tagtree.io.store import Store

    data = tmp_path / "big.jsonl"
    n = 40_000
    data.write_text("".join(json.dumps({"instruction": f"Explain item {i} of a sharded file",
                                        "output": "x" * 40}) + "\n" for i in range(n)))
    db = str(tmp_path / "s.duckdb")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_INGEST, db, str(data)],
                            env=os.environ | {"PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
            d.is_dir() and any(d.glob("*.parquet")) for d in tmp_path.glob(f"{SHARD_PREFIX}*")):
        time.sleep(0.02)
    assert proc.poll() is None, "the ingest must still be running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # its pool workers notice their parent is gone and exit
    left = list(tmp_path.glob(f"{SHARD_PREFIX}*"))
    assert left, "the kill must land while shards are on disk"
    with Store(db) as store:
        summary = ingest_files(store, [str(data)], workers=2)
        assert store.scalar("SELECT count(*) FROM instances") == n
        assert store.scalar("SELECT count(DISTINCT id) FROM instances") == n
    assert summary.valid == n
    assert not list(tmp_path.glob(f"{SHARD_PREFIX}*"))  # swept, and its own removed


def test_sweep_spares_live_ingests_and_removes_old_unowned_dirs(tmp_path):
    import socket

    from tagtree.io.ingest import SHARD_PREFIX, STALE_UNOWNED_S, sweep_stale_shard_dirs

    live, dead, old, fresh = (tmp_path / f"{SHARD_PREFIX}{n}" for n in ("live", "dead", "old",
                                                                         "fresh"))
    for d in (live, dead, old, fresh):
        d.mkdir()
    (live / "owner").write_text(f"{socket.gethostname()} {os.getpid()}")
    gone = subprocess.Popen(["true"])
    gone.wait()
    (dead / "owner").write_text(f"{socket.gethostname()} {gone.pid}")
    os.utime(old, (time.time() - STALE_UNOWNED_S - 60,) * 2)
    removed = sweep_stale_shard_dirs(str(tmp_path))
    assert sorted(Path(r).name for r in removed) == sorted([dead.name, old.name])
    assert live.exists() and fresh.exists()
