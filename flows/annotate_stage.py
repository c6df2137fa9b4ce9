"""The annotate stage of a flow: one ``annotate`` task, or shard tasks on a cluster.

An LLM tagger waits on the network: one task with many requests in flight is the right shape
anywhere. The keyphrase tagger is CPU-bound (it embeds every instance), so on a Dask or Ray
cluster the pending instances are exported as Parquet partitions, ``tag-shard`` tasks tag them
on the workers, and ``load-annotations``, the single DuckDB writer, upserts the results.
"""

from __future__ import annotations

import shutil
import time

from prefect import unmapped

from flows.cluster import new_shard_dir, on_cluster
from tagtree.io.annotator import uses_llm
from tasks.annotate import annotate, export_pending, load_annotations, tag_shard


def annotate_stage(db: str, conf: dict, cfg) -> dict:
    if not on_cluster() or uses_llm(cfg) or cfg.annotate.mode == "batch":
        return annotate(db, conf)
    started = time.perf_counter()
    out_dir = new_shard_dir(cfg, db)
    try:
        plan = export_pending(db, conf, out_dir)
        tagged = tag_shard.map(plan["parts"], unmapped(conf))
        return load_annotations(db, plan, [future.result() for future in tagged],
                                time.perf_counter() - started)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
