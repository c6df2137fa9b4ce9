"""Ingest tasks: files -> instances / instance_sources / quarantine.

``ingest`` does it all in one task (big JSONL files are parsed by a process pool inside it): the
right shape on one machine. On a Dask/Ray cluster the curate flow shards instead:
``plan-ingest`` cuts big JSONL files into byte ranges, ``parse-shard`` tasks (run anywhere the
cluster puts them) each write one range as Parquet files into a shared directory, and
``load-shards`` -- the single DuckDB writer -- loads them in file order.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tagtree.io.ingest import (
    Chunk,
    IngestSummary,
    ParsedBatch,
    check_inputs,
    chunkable,
    dataset_name,
    ingest_files,
    parse_chunk,
    plan_file,
    shard_groups,
    write_file,
    writer_settings,
)
from tagtree.io.store import Store
from tasks.policies import retry_unless_user_error


# Not cached: ingest is cheap, idempotent (content ids), and must see files that changed.
@task(name="ingest", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_user_error, timeout_seconds=6 * 3600)
def ingest(db: str, inputs: list[str], fmt: str = "auto", dataset: str | None = None,
           role: str = "pool", batch_rows: int = 50_000, workers: int = 0,
           memory_limit: str = "1GB", split: str | None = None) -> dict:
    with Store(db) as store:
        summary = ingest_files(store, inputs, fmt=fmt, dataset=dataset, role=role,
                               batch_rows=batch_rows, workers=workers, memory_limit=memory_limit,
                               split=split)
    return summary.to_dict() | {"line": summary.line()}


@task(name="plan-ingest", cache_policy=NO_CACHE, timeout_seconds=600)
def plan_ingest(inputs: list[str], fmt: str = "auto") -> list[dict]:
    """The inputs worth sharding: ``[{path, fmt, chunks: [[start, end], ...]}]``; the others
    are read whole by an ``ingest`` task."""
    forced = None if fmt == "auto" else fmt
    plan = []
    for path in check_inputs(inputs, fmt):
        if chunkable(path):
            detected, chunks = plan_file(path, forced)
            plan.append({"path": path, "fmt": detected,
                         "chunks": [[c.start, c.end] for c in chunks]})
    return plan


# No timeout on shard tasks: they run in a cluster worker's thread, where Prefect cannot
# interrupt them (it warns on every shard instead); the cluster's own limits apply.
@task(name="parse-shard", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_user_error)
def parse_shard(path: str, start: int, end: int, fmt: str | None, out_dir: str) -> dict:
    """Parse one byte range of ``path`` into Parquet files under ``out_dir`` (a directory the
    writer can read). Returns the shard's file paths and counts, nothing big."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return asdict(parse_chunk(Chunk(path, start, end), fmt, out_dir))


@task(name="load-shards", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_user_error, timeout_seconds=6 * 3600)
def load_shards(db: str, files: list[dict], dataset: str | None = None, role: str = "pool",
                memory_limit: str = "1GB") -> dict:
    """The single writer: ``files`` = [{path, shards: [parse-shard results in file order]}]."""
    summary = IngestSummary()
    started = time.perf_counter()
    with Store(db) as store, writer_settings(store, memory_limit):
        for item in files:
            shards = [ParsedBatch(**s) for s in item["shards"]]
            fmt = next((s.fmt for s in shards if s.fmt), None)
            summary.files.append(write_file(
                store, item["path"], dataset or dataset_name(item["path"]), role, fmt,
                shard_groups(shards)))
    summary.seconds = time.perf_counter() - started
    return summary.to_dict() | {"line": summary.line()}
