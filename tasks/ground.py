"""Ground task: annotations + tag_leaf -> instance_nodes (``tagtree.stages.ground``).

Cached (inputs, task source, the tree algorithm's version, the store's identity and the
annotations' content): an identical curate run shows ground as Cached in the UI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from tagtree.stages.ground import ground as ground_stage
from tagtree.tree import ALGORITHM_VERSION
from tasks.policies import cached


@dataclass
class AnnotationsContent(CachePolicy):
    """Cache key part: a content hash of the annotations the stage reads (``db`` and ``cfg``
    do not change when new tags arrive). No key (no caching) when the store cannot be read."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        from tagtree.io.store import Store

        try:
            with Store(inputs["db"]) as store:
                return store.annotations_digest(inputs.get("tagger"))
        except Exception:  # noqa: BLE001 - a locked or missing store just means "do not cache"
            return None


@task(name="ground", retries=2, retry_delay_seconds=10, timeout_seconds=2 * 3600,
      **cached(ALGORITHM_VERSION, AnnotationsContent()))
def ground(db: str, cfg: dict, tree_version: str | None = None, tagger: str | None = None,
           drift_datasets: list[str] | None = None) -> dict:
    """annotations + tag_leaf -> instance_nodes (and tag_leaf rows for tags new to the tree).
    Returns tree_version, instances, instance_nodes, new_tags, far_new_tags, drift (on
    ``drift_datasets`` when given) and rebuild_advised."""
    return ground_stage(db, config=cfg, tree_version=tree_version, tagger=tagger,
                        drift_datasets=drift_datasets).figures
