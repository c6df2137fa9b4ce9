"""Annotate task: instances -> annotations (tags per instance, cached by tagger fingerprint)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext

from tagtree.config import Config
from tagtree.io.annotate_shards import export_pending as export_partitions
from tagtree.io.annotate_shards import load_results, tag_partition
from tagtree.io.annotator import (
    AnnotateSummary,
    annotate_store,
    open_tagger,
    tagger_fingerprint_for,
)
from tagtree.io.store import Store
from tasks.policies import LLM_TAG, TRANSIENT_RETRIES, stage_cache_policy

ALGORITHM_VERSION = "annotate-1"


@dataclass
class PendingAnnotations(CachePolicy):
    """Key part = tagger fingerprint + digest of the instances still lacking an ok annotation
    (ids and attempts so far): the task's real input is the store's content, not its path, so a
    new instance or a failed row to retry changes the key; an unchanged store hits the cache."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str:
        cfg = Config.model_validate(inputs["cfg"])
        fingerprint = tagger_fingerprint_for(cfg)
        with Store(inputs["db"]) as store:
            return f"{fingerprint}:{store.pending_digest(fingerprint)}"


@task(name="annotate", tags=[LLM_TAG], timeout_seconds=24 * 3600, persist_result=True,
      result_serializer="json",
      cache_policy=stage_cache_policy(ALGORITHM_VERSION) + PendingAnnotations(),
      **TRANSIENT_RETRIES)
def annotate(db: str, cfg: dict) -> dict:
    """Tag every pool and target instance lacking an ok annotation for the configured tagger.
    Returns counts (requested/ok/failed/cached), tokens, failure reasons and the fingerprint."""
    config = Config.model_validate(cfg)
    # Outside a flow run (task.fn in tests) there is no Prefect API to report progress to.
    artifact = (create_progress_artifact(progress=0.0, key="annotate-progress",
                                         description="instances annotated in this run")
                if TaskRunContext.get() else None)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if artifact and (time.monotonic() - last[0] >= 2.0 or done == total):
            last[0] = time.monotonic()  # a few API calls per run, not one per flush
            update_progress_artifact(artifact, 100.0 * done / max(total, 1))

    with Store(db) as store, open_tagger(config) as tagger:
        if config.annotate.mode == "batch":
            from tagtree.io.batch import annotate_batch

            summary = annotate_batch(store, tagger, config, progress=progress)
        else:
            summary = annotate_store(store, tagger, page=config.annotate.batch_size,
                                     progress=progress)
    if artifact:
        update_progress_artifact(artifact, 100.0)
    return summary.to_dict() | {"table": "annotations", "line": summary.line()}


# -- on a Dask/Ray cluster, CPU-bound taggers run as shard tasks (see flows/annotate_stage.py) --
@task(name="export-pending", cache_policy=NO_CACHE, timeout_seconds=3600)
def export_pending(db: str, cfg: dict, out_dir: str) -> dict:
    """Write the instances lacking an ok annotation as Parquet partitions under ``out_dir``."""
    config = Config.model_validate(cfg)
    with Store(db) as store, open_tagger(config) as tagger:
        store.register_tagger(tagger.fingerprint, tagger.describe())
        counts = store.annotation_counts(tagger.fingerprint)
        parts = export_partitions(store, tagger.fingerprint, out_dir, config.annotate.batch_size)
    return {"tagger": tagger.fingerprint, "parts": parts, "instances": counts["instances"],
            "cached": counts["ok"]}


@task(name="tag-shard", cache_policy=NO_CACHE, timeout_seconds=6 * 3600, retries=1,
      retry_delay_seconds=5)
def tag_shard(path: str, cfg: dict) -> str:
    """Tag one partition on whichever worker runs this; returns the results' Parquet path."""
    with open_tagger(Config.model_validate(cfg)) as tagger:
        return tag_partition(tagger, path)


@task(name="load-annotations", cache_policy=NO_CACHE, timeout_seconds=3600)
def load_annotations(db: str, plan: dict, tagged: list[str], seconds: float = 0.0) -> dict:
    """The single writer: upsert the tagged partitions into ``annotations``."""
    with Store(db) as store:
        stats = load_results(store, plan["tagger"], tagged)
    stats.cached = plan["cached"]
    summary = AnnotateSummary.of(plan["tagger"], plan["instances"], stats, seconds)
    return summary.to_dict() | {"table": "annotations", "line": summary.line()}
