"""Benchmark: how fast `tagtree annotate` gives up on a dead endpoint (issue 16, "Must show").

Each case runs the real command in a fresh process (startup included) on a store of ``--n``
instances and prints its exit code, wall time, the bound and the first line of its message:

- refused:  nothing listens on the port (connection refused). Bound: 15 s.
- silent:   a socket that accepts and never answers (the probe's GET /models times out).
            Bound: 2 x request timeout + 15 s.
- hang:     /models answers, every chat request hangs (the circuit breaker trips), at
            concurrency 1 and 16. Bound: 2 x request timeout + 15 s.

    .venv/bin/python benchmarks/hostile.py                 # --n 300 --timeout 10
    .venv/bin/python benchmarks/hostile.py --timeout 60    # the default request timeout
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def seed(db: str, n: int, tmp: Path) -> None:
    from tagtree.io.ingest import ingest_files
    from tagtree.io.store import Store

    path = tmp / "pool.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Explain item{i:05d} in python",
                                        "output": f"Answer {i}."}) + "\n" for i in range(n)))
    with Store(db) as store:
        ingest_files(store, [str(path)])


def annotate(db: str, url: str, timeout: float, concurrency: int) -> tuple[int, float, str]:
    tagtree = str(Path(sys.executable).with_name("tagtree"))
    env = os.environ | {"PYTHONPATH": str(REPO), "TAGTREE_LLM_TIMEOUT_S": str(timeout)}
    started = time.monotonic()
    proc = subprocess.run([tagtree, "annotate", "--llm-base-url", url, "--llm-model", "m",
                           "--concurrency", str(concurrency), "--db", db],
                          capture_output=True, text=True, env=env, timeout=3600)
    message = (proc.stderr.strip().splitlines() or [""])[0]
    return proc.returncode, time.monotonic() - started, message


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="instances in the store")
    parser.add_argument("--timeout", type=float, default=10.0, help="llm.timeout_s")
    args = parser.parse_args()

    from tests.support.openai_server import FakeOpenAIServer, SilentServer, refused_url

    ok = True
    print(f"{'case':<16} {'exit':>4} {'seconds':>8} {'bound':>6}  message")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        db = str(tmp_path / "hostile.duckdb")
        seed(db, args.n, tmp_path)
        bound_t = 2 * args.timeout + 15
        with SilentServer() as silent, FakeOpenAIServer() as hanging:
            hanging.inject("hang", count=10**7)
            cases = [("refused", refused_url(), 16, 15.0),
                     ("silent", silent.base_url, 16, bound_t),
                     ("hang c=1", hanging.base_url, 1, bound_t),
                     ("hang c=16", hanging.base_url, 16, bound_t)]
            for name, url, concurrency, bound in cases:
                code, seconds, message = annotate(db, url, args.timeout, concurrency)
                good = code == 2 and seconds <= bound
                ok &= good
                print(f"{name:<16} {code:>4} {seconds:>8.1f} {bound:>6.0f}  {message[:110]}"
                      f"{'' if good else '  <-- MISSED'}")
    print(f"{args.n} instances, request timeout {args.timeout:g} s: "
          f"{'every case within its bound' if ok else 'a bound was missed'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
