"""Sample task: scores + instance_nodes (+ target grounding, instance_embeddings) -> selections
and selection_metrics (``tagtree.stages.sample``), plus a Prefect table artifact of the metrics."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tagtree.stages.sample import metrics_rows, run_sample
from tasks.policies import artifact_key


# No Prefect cache: ``run_id`` is an input and a new flow run has a new id (a selection belongs to
# its run), so a cached result could never be reused, while its key read a fingerprint of the
# grounding, scores and embeddings on every call.
@task(name="sample", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10,
      timeout_seconds=6 * 3600)
def sample(db: str, cfg: dict, tree_version: str, run_id: str) -> dict:
    """Write ``selections`` + ``selection_metrics`` for ``run_id``; returns the metrics, the KL to
    the target before (whole pool) and after (selection) when a target sample is stored."""
    from prefect.artifacts import create_table_artifact
    from prefect.context import TaskRunContext

    summary = run_sample(db, cfg, tree_version, run_id)
    if TaskRunContext.get() is not None:  # not when the body is called directly (tests, CLI)
        create_table_artifact(key=artifact_key("selection-metrics", cfg),
                              table=metrics_rows(summary),
                              description=f"Selection metrics of run {run_id} (pool "
                                          f"{summary['pool']:,}, budget {summary['budget']})")
    return summary
