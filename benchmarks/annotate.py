"""Benchmark of the annotate stage: requests/s vs the ideal and vs a bare AsyncOpenAI loop.

The loopback OpenAI-compatible test server runs in its own process with a fixed latency per
request (default 100 ms). For each concurrency level, tagtree's annotator (prompt rendering,
retries, parsing, validation, DuckDB writes as results arrive) tags a slice of the pool, and a
bare ``AsyncOpenAI`` loop with a semaphore sends the same number of requests to the same server.
Ideal = concurrency / latency. A slice is sized to about ``--seconds`` at the ideal rate (at most
``--n``) so concurrency 1 does not take 17 minutes.

    .venv/bin/python benchmarks/annotate.py             # short: --n 2000
    .venv/bin/python benchmarks/annotate.py --n 10000   # the issue's size
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def serve(latency: float, queue, stop) -> None:
    import os

    from tests.support.openai_server import FakeOpenAIServer

    parent = os.getppid()
    with FakeOpenAIServer(latency=latency) as srv:
        queue.put(srv.base_url)
        while not stop.wait(1.0) and os.getppid() == parent:  # exit if the benchmark is killed
            pass


def seed(db: str, n: int) -> None:
    from tagtree.io.ingest import ingest_files
    from tagtree.io.store import Store

    path = Path(db).with_suffix(".jsonl")
    topics = ["binary search", "photosynthesis", "formal email tone", "sql joins", "recursion"]
    path.write_text("".join(
        json.dumps({"instruction": f"Explain {topics[i % 5]} for case {i} with an example.",
                    "output": f"Here is a worked answer about {topics[i % 5]} number {i}. " * 4})
        + "\n" for i in range(n)))
    with Store(db) as store:
        ingest_files(store, [str(path)])


def run_tagtree(db: str, base_url: str, concurrency: int, n: int) -> float:
    from tagtree.config import load_config
    from tagtree.io.annotator import annotate_store, open_tagger
    from tagtree.io.store import Store

    # A model name per run gives a fresh tagger fingerprint: nothing is cached between runs.
    cfg, _ = load_config(None, {"llm.base_url": base_url, "llm.model": f"bench-c{concurrency}",
                                "annotate.concurrency": concurrency}, environ={})
    with Store(db) as store, open_tagger(cfg) as tagger:
        summary = annotate_store(store, tagger, limit=n)
    assert summary.ok == n, summary
    return summary.requested / summary.seconds


def run_bare(base_url: str, concurrency: int, n: int, messages: list) -> float:
    import httpx
    import openai

    async def main() -> float:
        client = openai.AsyncOpenAI(
            base_url=base_url, api_key="bench", max_retries=0,
            http_client=httpx.AsyncClient(limits=httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency)))
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                resp = await client.chat.completions.create(
                    model="bare", messages=messages[i % len(messages)],
                    response_format={"type": "json_schema",
                                     "json_schema": {"name": "tags", "schema": {}}})
                json.loads(resp.choices[0].message.content)

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - start
        await client.close()
        return n / elapsed

    return asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="instances in the pool [2000]")
    ap.add_argument("--latency", type=float, default=0.1, help="server latency, s [0.1]")
    ap.add_argument("--concurrency", default="1,8,32,128", help="levels [1,8,32,128]")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="slice per level sized to this many seconds at the ideal rate [10]")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    ctx = mp.get_context("spawn")
    queue, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve, args=(args.latency, queue, stop), daemon=True)
    server.start()
    base_url = queue.get(timeout=30)
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.duckdb")
        seed(db, args.n)
        messages = _messages(db)
        print(f"annotate benchmark: pool {args.n:,}, server latency {args.latency * 1000:.0f} ms, "
              f"{psutil.cpu_count()} CPUs (shared)")
        print(f"{'conc':>5} {'n':>6} {'tagtree/s':>10} {'ideal/s':>8} {'%ideal':>7} "
              f"{'bare/s':>8} {'%bare':>6}")
        for c in levels:
            n = min(args.n, max(20, int(c / args.latency * args.seconds)))
            ours = run_tagtree(db, base_url, c, n)
            bare = run_bare(base_url, c, n, messages)
            ideal = c / args.latency
            print(f"{c:>5} {n:>6,} {ours:>10.1f} {ideal:>8.0f} {100 * ours / ideal:>6.0f}% "
                  f"{bare:>8.1f} {100 * ours / bare:>5.0f}%", flush=True)
    rss = psutil.Process().memory_info().rss / 2**20
    print(f"client process RSS at the end: {rss:.0f} MiB")
    stop.set()
    server.join(timeout=5)


def _messages(db: str) -> list:
    """The exact prompts tagtree sends, so both loops move the same bytes."""
    from tagtree.annotation import TagInput, load_prompt
    from tagtree.io.store import Store
    from tagtree.io.store.bench import first_instances

    prompt = load_prompt("tag", "v1")
    with Store(db) as store:
        rows = first_instances(store, 100)
    return [prompt.render(instruction=TagInput(*r).instruction, response=r[2], system="",
                          min_tags=2, max_tags=12) for r in rows]


if __name__ == "__main__":
    main()
