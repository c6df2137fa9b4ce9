"""The ingest stage of a flow: one ``ingest`` task on one machine, shard tasks on a cluster.

With the thread runner, the ``ingest`` task parses big JSONL files in a local process pool (tasks
in threads would share one GIL). With a Dask or Ray runner, big JSONL files are cut into byte
ranges that ``parse-shard`` tasks parse on the cluster's workers into Parquet files under
``runner.shard_dir``; ``load-shards``, the single DuckDB writer, loads them in file order.
Files are loaded in the order given, so the first file to hold a duplicate keeps its row.
"""

from __future__ import annotations

import shutil

from prefect import unmapped

from flows.cluster import new_shard_dir, on_cluster
from tagtree.io.ingest import FileSummary, IngestSummary
from tasks.ingest import ingest, load_shards, parse_shard, plan_ingest


def ingest_stage(db: str, inputs: list[str], cfg, role: str,
                 names: list[str] | None = None) -> dict:
    """Ingest ``inputs`` as ``role`` (pool/target) with the recipe ``cfg``; returns the summary
    dict of the ``ingest`` task (files, counts, line). ``names``: a dataset name per input
    (objects of a bucket are named by their key, not their file name)."""
    ing = cfg.ingest
    fmt = ing.format if role == "pool" else "auto"
    dataset = ing.dataset if role == "pool" else None
    split = ing.split if role == "pool" else None
    if names is not None and len(set(names)) > 1:  # one ingest per dataset, in input order
        parts = [ingest_stage(db, [path], cfg, role, [name])
                 for path, name in zip(inputs, names, strict=True)]
        summary = IngestSummary(files=[FileSummary(**f) for r in parts for f in r["files"]],
                                seconds=sum(r["seconds"] for r in parts))
        return summary.to_dict() | {"line": summary.line()}
    if names:
        dataset = names[0]
    if not on_cluster():
        return ingest(db, inputs, fmt, dataset, role, ing.batch_rows, ing.workers,
                      ing.memory_limit, split)
    plan = plan_ingest(inputs, fmt)
    out_dir = new_shard_dir(cfg, db)
    # Every file's shards are submitted before any is awaited: the cluster parses them all at
    # once while this process waits.
    parsed = {
        item["path"]: parse_shard.map(
            unmapped(item["path"]), [c[0] for c in item["chunks"]], [c[1] for c in item["chunks"]],
            unmapped(item["fmt"]), unmapped(out_dir))
        for item in plan
    }
    results = []
    try:
        for path in inputs:
            if path in parsed:
                shards = [future.result() for future in parsed[path]]
                results.append(load_shards(db, [{"path": path, "shards": shards}], dataset,
                                           role, ing.memory_limit))
            else:
                results.append(ingest(db, [path], fmt, dataset, role, ing.batch_rows,
                                      ing.workers, ing.memory_limit, split))
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    summary = IngestSummary(files=[FileSummary(**f) for r in results for f in r["files"]],
                            seconds=sum(r["seconds"] for r in results))
    return summary.to_dict() | {"line": summary.line()}
