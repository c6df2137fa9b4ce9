"""Pipeline benchmark (orchestration): `curate` on N generated instances (default 100K) against
the loopback fake OpenAI-compatible server with zero latency.

    .venv/bin/python benchmarks/pipeline.py [--n 100000] [--dir /tmp/tagtree-bench-pipeline]

Prints total wall time, time and throughput per stage (one row per task name in the run graph),
the LLM and embedding stages against their own floors measured in the same run (a bare request
loop to the same server at the same concurrency; bare embedding of the same tag texts), and
Prefect's share: flow wall time not covered by any task run. Prefect's one-off start (the
ephemeral API server) is measured by a warm-up flow and reported apart.
Targets (issue 7): total <= 15 min, orchestration overhead <= 10%, no stage below 70% of floor.

    .venv/bin/python benchmarks/pipeline.py --compare-workers [--n 2000]

runs `curate` on a local Dask cluster (runner.runner = "dask") with 1 worker, then 2, each on a
fresh store with the offline keyphrase tagger (CPU-bound: it embeds every instance), and prints
the wall time of the CPU stages (ingest + annotate, the ones cut into shard tasks) and of the
whole run for each; the embedder in each worker gets the worker's share of the cores.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# as the CLI does: the first ephemeral start on a fresh machine migrates a new database (> 20 s)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("OPENAI_API_KEY", "bench-key")  # the fake server ignores it

FLOOR_SAMPLE = 5000  # requests / texts per floor measurement (rates, not totals)
TOPICS = ("python", "sql", "regex", "calculus", "probability", "geometry", "chemistry", "physics",
          "history", "poetry", "marketing", "finance", "docker", "kubernetes", "react", "rust",
          "nutrition", "travel", "chess", "music", "law", "medicine", "biology", "statistics")
VERBS = ("explain", "write", "debug", "summarize", "compare", "design", "prove", "translate",
         "optimize", "review", "plan", "classify")
OBJECTS = ("function", "query", "essay", "proof", "recipe", "schedule", "contract", "diagram",
           "algorithm", "report", "lesson", "itinerary", "test suite", "budget", "poem")


SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "su")
SUBJECTS = 4000  # made-up subject words: real pools have thousands of distinct tags, not hundreds


def subject(k: int) -> str:
    """The k-th made-up subject word (four syllables, letters only)."""
    return "".join(SYLLABLES[(k // 10**j) % 10] for j in range(4))


def generate(path: Path, n: int, seed: int = 0) -> None:
    """N distinct Alpaca rows whose words (and so the fake tagger's tags) cluster by topic; a
    subject word from a vocabulary of 4,000 gives the pool thousands of distinct tags (with
    only the topic words, 100K rows had 663, and the embed stage measured its start-up)."""
    rng = random.Random(seed)
    with path.open("wb") as fh:
        for i in range(n):
            topic, other = rng.choice(TOPICS), subject(rng.randrange(SUBJECTS))
            verb, obj = rng.choice(VERBS), rng.choice(OBJECTS)
            row = {"instruction": f"{verb} a {topic} {obj} about {other} case {i % 997}",
                   "input": "" if i % 3 else f"context {rng.randrange(10**6)}",
                   "output": f"Here is a {topic} {obj}: step {i} " + " ".join(
                       rng.choice(TOPICS) for _ in range(12))}
            fh.write(orjson.dumps(row) + b"\n")


def floor_requests(base_url: str, model: str, texts: list[str], concurrency: int) -> float:
    """Requests/s of a bare chat-completions loop at the tagger's concurrency."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)

    def one(text: str) -> None:
        client.chat.completions.create(model=model,
                                       messages=[{"role": "user", "content": text}])

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, texts))
    return len(texts) / (time.perf_counter() - started)


def floor_embedding(cfg, texts: list[str]) -> float:
    """Texts/s of the configured embedder on the same texts, called directly."""
    from tagtree.io.embedder import make_embedder

    embedder = make_embedder(cfg)
    embedder.embed(texts[:32])  # warm-up: session creation is not throughput
    started = time.perf_counter()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - started)


def warm_up() -> None:
    """Start Prefect (ephemeral API server, client) with an empty flow run."""
    from prefect import flow

    flow(name="warm-up")(lambda: None)()


def task_runs(flow_run_id) -> list:
    """All task runs of a flow run and its subflows."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentTaskRunId,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[r.id for r in runs])))
    child_ids = {c.parent_task_run_id for c in children}
    out = [r for r in runs if r.id not in child_ids]  # a subflow's stand-in is not work
    for child in children:
        out += task_runs(child.id)
    return out


def covered_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals (tasks may run concurrently)."""
    total, end_seen = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > end_seen:
            total += end - max(start, end_seen)
            end_seen = end
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dir", default="/tmp/tagtree-bench-pipeline")
    parser.add_argument("--budget", default="0.05")
    parser.add_argument("--compare-workers", action="store_true",
                        help="1 vs 2 Dask workers on the CPU stages (keyphrase tagger)")
    args = parser.parse_args(argv)
    if args.compare_workers:
        return compare_workers(args.n if args.n != 100_000 else 2000, Path(args.dir))

    from flows.curate import curate
    from tagtree.config import load_config
    from tagtree.io.store import Store
    from tagtree.io.store.bench import first_tags
    from tests.support.openai_server import FakeOpenAIServer

    work = Path(args.dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data, db = work / "pool.jsonl", str(work / "bench.duckdb")
    generate(data, args.n)
    print(f"generated {args.n:,} instances ({data.stat().st_size / 1e6:.0f} MB); "
          f"machine: {os.cpu_count()} cores (shared with other work while measuring)")

    with FakeOpenAIServer(latency=0.0) as srv:
        overrides = {"llm.base_url": srv.base_url, "llm.model": "fake-tagger",
                     "sample.budget": args.budget, "export.out": str(work / "out")}
        cfg, _ = load_config(None, overrides | {"store.db": db})
        started = time.perf_counter()
        warm_up()
        startup = time.perf_counter() - started
        started = time.perf_counter()
        state = curate(inputs=[str(data)], db=db, overrides=overrides, return_state=True)
        wall = time.perf_counter() - started
        if not state.is_completed():
            print(f"curate did not complete: {state.message}", file=sys.stderr)
            return 1
        n_requests = len(srv.chat_requests())
        srv.reset_log()
        sample = [f"explain a {TOPICS[i % len(TOPICS)]} function case {i}"
                  for i in range(min(FLOOR_SAMPLE, args.n))]
        floors = {"annotate": ("requests/s", floor_requests(srv.base_url, "fake-tagger", sample,
                                                            cfg.annotate.concurrency))}
    with Store(db, read_only=True) as store:
        tags = first_tags(store, FLOOR_SAMPLE)
        n_tags = store.count("tags")
        n_embedded = store.count("tag_embeddings")  # all made by this run's embed-tags task
    if tags:
        floors["embed"] = ("texts/s", floor_embedding(cfg, tags))

    runs = [r for r in task_runs(state.state_details.flow_run_id) if r.start_time and r.end_time]
    stages: dict[str, float] = {}
    for r in runs:
        name = r.name.rsplit("-", 1)[0]
        stages[name] = stages.get(name, 0.0) + (r.end_time - r.start_time).total_seconds()
    covered = covered_seconds([(r.start_time.timestamp(), r.end_time.timestamp()) for r in runs])
    overhead = max(0.0, wall - covered) / wall

    work_units = {"ingest": args.n, "annotate": n_requests, "embed": n_embedded}
    rates = {"ingest": "rows/s"}
    print(f"\n{'stage':<22}{'seconds':>9}{'share':>7}   {'throughput':>20}   {'floor':>20}  ratio")
    worst = None
    for name, secs in sorted(stages.items(), key=lambda kv: -kv[1]):
        kind = next((k for k in work_units if k in name), None)
        units = work_units.get(kind) if kind else None
        line = f"{name:<22}{secs:>9.1f}{secs / wall:>7.0%}"
        if kind in rates and units and secs > 0:
            line += f"   {units / secs:>13,.0f} {rates[kind]:<6}"
        if kind in floors and units and secs > 0:
            unit, floor = floors[kind]
            rate, ratio = units / secs, units / secs / floor
            worst = ratio if worst is None else min(worst, ratio)
            line += f"   {rate:>13,.0f} {unit:<6}   {floor:>13,.0f} {unit:<6}  {ratio:.0%}"
        print(line)
    print(f"\ntotal wall {wall:.1f} s ({args.n:,} instances, {n_requests:,} LLM requests, "
          f"{n_tags:,} tags)\nPrefect's share (flow wall outside every task run, an upper bound): "
          f"{overhead:.1%}; "
          f"Prefect start-up before the run (not counted): {startup:.1f} s")
    print("floors measured: " + "; ".join(f"{k} {v:,.0f} {u}" for k, (u, v) in floors.items()))
    checks = [("total <= 15 min", wall <= 900), ("orchestration overhead <= 10%", overhead <= 0.10),
              ("every stage >= 70% of its floor", worst is None or worst >= 0.70)]
    for label, ok in checks:
        print(f"  [{'ok' if ok else 'MISSED'}] {label}")
    return 0


def compare_workers(n: int, work: Path) -> int:
    """Wall time of the CPU stages with 1 and 2 local Dask workers."""
    from flows.curate import curate
    from flows.runners import with_runner, worker_threads
    from tagtree.config import RunnerConfig

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = work / "pool.jsonl"
    generate(data, n)
    print(f"generated {n:,} instances; machine: {os.cpu_count()} cores (shared with other "
          "work while measuring); tagger: keyphrase (offline, CPU-bound)")
    warm_up()
    rows = []
    for workers in (1, 2):
        db = str(work / f"w{workers}.duckdb")
        overrides = {"annotate.tagger": "keyphrase", "llm.base_url": "", "sample.budget": "0.05",
                     "export.out": str(work / f"out-w{workers}"), "runner.workers": workers}
        started = time.perf_counter()
        state = with_runner(curate, RunnerConfig(runner="dask", workers=workers))(
            inputs=[str(data)], db=db, overrides=overrides, return_state=True)
        wall = time.perf_counter() - started
        if not state.is_completed():
            print(f"curate with {workers} worker(s) did not complete: {state.message}",
                  file=sys.stderr)
            return 1
        timings = state.result()["timings"]
        shards = [r for r in task_runs(state.state_details.flow_run_id)
                  if r.name.startswith(("tag-shard", "parse-shard"))]
        cpu = timings.get("ingest", 0.0) + timings.get("annotate", 0.0)
        rows.append((workers, worker_threads(workers), len(shards), timings.get("ingest", 0.0),
                     timings.get("annotate", 0.0), cpu, wall))
    print(f"\n{'workers':>7}{'threads/worker':>16}{'shard tasks':>13}{'ingest s':>10}"
          f"{'annotate s':>12}{'CPU stages s':>14}{'run wall s':>12}")
    for w, t, k, ing, ann, cpu, wall in rows:
        print(f"{w:>7}{t:>16}{k:>13}{ing:>10.1f}{ann:>12.1f}{cpu:>14.1f}{wall:>12.1f}")
    speedup = rows[0][5] / rows[1][5] if rows[1][5] else float("nan")
    print(f"\nCPU stages: 2 workers {speedup:.2f}x the speed of 1 "
          f"({'faster' if speedup > 1 else 'NOT faster'} on this machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
