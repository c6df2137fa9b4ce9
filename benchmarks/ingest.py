"""Ingest benchmark: generate an N-row JSONL (default 1,000,000) and time `tagtree ingest` on it.

Prints rows/s and the peak RSS of the ingest process. Targets on a 2-core machine: >= 50,000 rows/s
and peak RSS <= 1.5 GB. Usage: python benchmarks/ingest.py [--rows 1000000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("python list comprehension binary search formal email tone photosynthesis light "
         "reactions recipe budget travel itinerary sql join regex parse summarize translate "
         "poem haiku resume interview physics algebra proof history essay").split()


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Alpaca rows of realistic length, 2% duplicates and 0.1% broken lines."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            if i and rng.random() < 0.001:
                fh.write('{"instruction": "truncated\n')
                continue
            n = i if rng.random() > 0.02 else rng.randrange(max(i, 1))
            words = " ".join(rng.choice(WORDS) for _ in range(25))
            fh.write(json.dumps({
                "instruction": f"Task {n}: explain {words}",
                "input": "" if n % 3 else f"context {n} {words[:80]}",
                "output": f"Answer {n}. " + " ".join(rng.choice(WORDS) for _ in range(60)),
            }) + "\n")


def _sample_tree_rss(proc: subprocess.Popen) -> float:
    """Peak of the summed RSS of ``proc`` and its children (the parse workers), in MB."""
    import psutil

    peak = 0
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs))
        except psutil.Error:
            pass
        time.sleep(0.2)
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tagtree-bench-ingest-"))
    data, db = work / "pool.jsonl", work / "bench.duckdb"
    t0 = time.perf_counter()
    generate(data, args.rows)
    size_mb = data.stat().st_size / 1e6
    print(f"generated {args.rows:,} rows ({size_mb:,.0f} MB) in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tagtree", "ingest", str(data), "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"COLUMNS": "200"})
    tree_peak = _sample_tree_rss(proc)
    proc.stdout, proc.stderr = proc.communicate()
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:])
    rate = args.rows / wall
    print(f"ingest wall time  : {wall:.1f} s (whole command, incl. start-up)")
    print(f"throughput        : {rate:,.0f} rows/s   (target >= 50,000)  "
          f"{'OK' if rate >= 50_000 else 'BELOW TARGET'}")
    print(f"peak RSS          : {peak_mb:,.0f} MB     (target <= 1,536)   "
          f"{'OK' if peak_mb <= 1536 else 'ABOVE TARGET'}  (largest process: the writer)")
    print(f"peak RSS, all     : {tree_peak:,.0f} MB     (writer + parse workers together, "
          "sampled every 0.2 s)")
    if not args.keep:
        for p in work.iterdir():
            p.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
