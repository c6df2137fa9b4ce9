"""Benchmark: SIGKILL at a random point of ingest, annotate and curate; then the store must open,
the re-run complete, nothing be duplicated and no temporary file or directory be left.

For each stage, ``--runs`` times: start the real command in its own process group, kill the
whole group with SIGKILL after a random delay (uniform in 5%-80% of a measured clean run; a run
that ends before its kill is not counted and another is drawn), run the command again to
completion, and check the store and the directories. Prints one line per run and a summary per
stage.

    .venv/bin/python benchmarks/sigkill.py              # --runs 10
    .venv/bin/python benchmarks/sigkill.py --runs 3 --stages ingest,annotate
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def tagtree_cmd(*args) -> list[str]:
    return [str(Path(sys.executable).with_name("tagtree")), *map(str, args)]


def env(tmp: Path) -> dict:
    e = os.environ | {"PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp / "prefect-home"),
                      "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    e.pop("PREFECT_API_URL", None)
    return e


def make_pool(path: Path, n: int) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"instruction": f"Explain item{i:07d}: how does a binary heap "
                                 f"keep its order after insertion number {i}?",
                                 "output": "It sifts the new key up. " * 8}) + "\n")


def leftovers(*dirs: Path) -> list[str]:
    found = []
    for d in dirs:
        if d.exists():
            found += [str(p) for p in d.rglob(".tagtree-*")]
            found += [str(p) for p in d.rglob("*.tmp")]
    return found


def check_store(db: Path) -> dict:
    from tagtree.io.store import Store
    from tagtree.io.store.bench import integrity_counts

    with Store(str(db), read_only=True) as store:
        return integrity_counts(store)


def run_once(cmd, e, cwd, kill_after: float | None) -> tuple[int, float]:
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=e, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    if kill_after is None:
        _, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            print(err[-2000:], file=sys.stderr)
        return proc.returncode, time.monotonic() - started
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and every process it started
        proc.wait()
    return proc.returncode, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--stages", default="ingest,annotate,curate")
    parser.add_argument("--rows", type=int, default=400_000, help="ingest: rows (sharded)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    from tests.support.openai_server import FakeOpenAIServer

    ok_all = True
    with tempfile.TemporaryDirectory(dir=REPO.parent if os.access(REPO.parent, os.W_OK)
                                     else None) as tmp_s, FakeOpenAIServer(latency=0.005) as srv:
        tmp = Path(tmp_s)
        pool = tmp / "pool.jsonl"
        make_pool(pool, args.rows)
        small = tmp / "small.jsonl"
        make_pool(small, 3000)
        e = env(tmp)
        llm = ["--llm-base-url", srv.base_url, "--llm-model", "fake-tagger"]
        for stage in args.stages.split(","):
            work = tmp / stage
            if stage == "ingest":
                def cmd(db, out):
                    return tagtree_cmd("ingest", pool, "--db", db)
                prepare = None
            elif stage == "annotate":
                def cmd(db, out):
                    return tagtree_cmd("annotate", *llm, "--concurrency", "16", "--db", db)

                def prepare(db):
                    subprocess.run(tagtree_cmd("ingest", small, "--db", db), env=e, check=True,
                                   capture_output=True)
            else:
                def cmd(db, out):
                    return tagtree_cmd("curate", REPO / "examples" / "mt_bench.jsonl", *llm,
                                       "--db", db, "--out", out)
                prepare = None
            # A clean run gives the time window the kills are drawn from.
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            db, out = work / "store.duckdb", work / "out"
            if prepare:
                prepare(db)
            code, full = run_once(cmd(db, out), e, work, None)
            if code != 0:
                print(f"{stage}: the clean run failed (exit {code})")
                return 1
            expected = check_store(db)
            print(f"{stage}: clean run {full:.1f} s, {expected['instances']:,} instances, "
                  f"{expected['annotated_ok']:,} annotated")
            good = kills = tries = 0
            while kills < args.runs and tries < 3 * args.runs:
                tries += 1
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir()
                if prepare:
                    prepare(db)
                delay = rng.uniform(0.05, 0.8) * full
                killed_code, _ = run_once(cmd(db, out), e, work, delay)
                if killed_code != -signal.SIGKILL:
                    print(f"  (ended by itself before the kill at {delay:.1f} s: not counted)")
                    continue
                kills += 1
                i = kills - 1
                code, again = run_once(cmd(db, out), e, work, None)
                try:
                    got = check_store(db)
                except Exception as exc:  # noqa: BLE001 - the store must open: report if not
                    got = {"error": str(exc)}
                left = leftovers(work, tmp / "prefect-home")
                passed = (code == 0 and "error" not in got and got["dup_instances"] == 0
                          and got["dup_annotations"] == 0
                          and got["instances"] == expected["instances"]
                          and got["annotated_ok"] >= expected["annotated_ok"]
                          and got["running_runs"] == 0 and not left)
                good += passed
                print(f"  run {i + 1:>2}: killed at {delay:5.1f} s; re-run exit {code} in "
                      f"{again:5.1f} s; {got}; leftovers {len(left)}"
                      f"{'' if passed else '  <-- FAILED ' + str(left[:3])}")
            ok_all &= good == kills == args.runs
            print(f"{stage}: {good}/{kills} killed runs: store opened, re-run completed, no "
                  "duplicates, no leftovers")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
