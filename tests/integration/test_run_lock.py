"""One writer per store (issue 16): a second writer is refused at start naming the holder and
since when; read-only commands work during a run (from a snapshot); a killed holder leaves no
stale lock and its 'running' row is marked interrupted by the next curate."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tagtree.io.store import Store

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "mt_bench.jsonl"

HOLDER = """
import sys, time
from tagtree.io.runlock import run_lock
from tagtree.io.store import Store
with run_lock(sys.argv[1], "tagtree curate"), Store(sys.argv[1]) as store:
    store.start_run("run-held", "curate", {})
    store.run("CHECKPOINT")
    store.run("INSERT INTO meta VALUES ('written-while-held', 'yes')")  # in the WAL only
    print("holding", flush=True)
    time.sleep(120)
"""


def env():
    return os.environ | {"PYTHONPATH": str(REPO)}


def tagtree(*args):
    exe = str(Path(sys.executable).with_name("tagtree"))
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env=env() | {"COLUMNS": "200"})


def snapshot_runs(db: str) -> list:
    with Store(db, read_only=True) as store:  # a snapshot while the holder writes
        return store.rows("SELECT run_id, status FROM runs ORDER BY run_id")


def hold(db: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, db], stdout=subprocess.PIPE,
                            text=True, env=env())
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_second_writer_refused_readers_served_killed_holder_leaves_nothing(report_db):
    holder = hold(report_db)
    try:
        started = time.monotonic()
        second = tagtree("ingest", EXAMPLE, "--db", report_db)
        assert second.returncode == 2 and time.monotonic() - started < 30
        assert re.fullmatch(
            rf"error: store {re.escape(report_db)} is in use: `tagtree curate` \(pid "
            rf"{holder.pid} on [^,]+, since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC\) is writing "
            r"it\. Wait for it to finish \(read-only commands such as `tagtree stats` work "
            r"meanwhile\), stop it, or use another --db\n", second.stderr), second.stderr
        # A second `tagtree curate` (the case that interleaved and died after working) is
        # refused at start: it does no work and writes no 'runs' row.
        runs_before = snapshot_runs(report_db)
        started = time.monotonic()
        curate = tagtree("curate", EXAMPLE, "--db", report_db, "--out",
                         Path(report_db).with_name("out"))
        assert curate.returncode == 2 and time.monotonic() - started < 60, curate.stderr
        assert curate.stderr.startswith(f"error: store {report_db} is in use: `tagtree curate` "
                                        f"(pid {holder.pid} on "), curate.stderr
        assert curate.stderr.count("\n") == 1 and "Traceback" not in curate.stderr
        assert snapshot_runs(report_db) == runs_before
        assert not Path(report_db).with_name("out").exists()
        # Readers work meanwhile, from a snapshot that includes what is only in the WAL; the
        # copy a SIGKILLed reader left (its owner process is gone) is swept by the next one.
        gone = subprocess.Popen(["true"])
        gone.wait()
        left = Path(report_db).with_name(".tagtree-snapshot-killedreader")
        left.mkdir()
        (left / "owner").write_text(f"{socket.gethostname()} {gone.pid}")
        (left / "report.duckdb").write_bytes(b"\0" * 4096)
        stats = tagtree("stats", "--db", report_db)
        assert stats.returncode == 0, stats.stderr
        assert "distinct instances" in stats.stdout
        shown = tagtree("tree", "show", "--db", report_db)
        assert shown.returncode == 0 and "nodes" in shown.stdout, shown.stderr
        page = Path(report_db).with_name("during.html")
        report = tagtree("report", "--db", report_db, "--out", page)
        assert report.returncode == 0 and page.stat().st_size > 10_000, report.stderr
        assert not list(Path(report_db).parent.glob(".tagtree-snapshot-*"))  # cleaned up
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel dropped the lock with the process: the next writer goes ahead.
    again = tagtree("ingest", EXAMPLE, "--db", report_db)
    assert again.returncode == 0, again.stderr
    with Store(report_db) as store:
        assert store.scalar("SELECT value FROM meta WHERE key = 'written-while-held'") == "yes"
        assert store.scalar("SELECT status FROM runs WHERE run_id = 'run-held'") == "running"
        assert store.interrupt_stale_runs() == 1
        assert store.scalar("SELECT status FROM runs WHERE run_id = 'run-held'") == "interrupted"


def test_the_lock_is_reentrant_in_one_process(db_path):
    from tagtree.io.runlock import holder, run_lock

    with run_lock(db_path, "tagtree curate"), Store(db_path) as a, Store(db_path) as b:
        assert a.count("instances") == b.count("instances") == 0
        assert holder(db_path).startswith("`tagtree curate` (pid ")  # seen from a new fd
    assert holder(db_path) is None
