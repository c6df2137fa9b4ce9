"""Ground task: annotations + tag_leaf -> instance_nodes (``tagtree.stages.ground``); cached on
the annotations' content like the tree (``tasks.tree._TREE_CACHE``)."""

from __future__ import annotations

from prefect import task

from tagtree.stages.ground import ground as ground_stage
from tasks.tree import _TREE_CACHE


@task(name="ground", retries=2, retry_delay_seconds=10, timeout_seconds=2 * 3600, **_TREE_CACHE)
def ground(db: str, cfg: dict, tree_version: str | None = None, tagger: str | None = None,
           drift_datasets: list[str] | None = None) -> dict:
    """annotations + tag_leaf -> instance_nodes (and tag_leaf rows for tags new to the tree).
    Returns tree_version, instances, instance_nodes, new_tags, far_new_tags, drift (on
    ``drift_datasets`` when given) and rebuild_advised."""
    return ground_stage(db, config=cfg, tree_version=tree_version, tagger=tagger,
                        drift_datasets=drift_datasets).figures
