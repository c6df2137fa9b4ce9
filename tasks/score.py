"""Score task: tree_nodes + instance_nodes (+ judgements) -> scores (``tagtree.stages.score``).

Cached on inputs (db, cfg, tree_version), the task source, an explicit algorithm version and a
fingerprint of the store tables the scores depend on: ``(db, cfg, tree_version)`` alone does not
change when instances are grounded onto an existing tree, and a stale cache would then be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from tagtree.stages.score import ALGORITHM_VERSION, run_score
from tasks.policies import LLM_TAG, stage_cache_policy


def store_fingerprint(db: str, tree_version: str | None, parts: tuple[str, ...]) -> str:
    from tagtree.io.store import Store

    with Store(db, read_only=True) as store:
        return store.content_fingerprint(tree_version, parts)


@dataclass
class StoreContent(CachePolicy):
    """Cache key part: a fingerprint of the store tables ``parts`` (no key if unreadable)."""

    parts: tuple[str, ...] = field(default_factory=tuple)

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        try:
            return store_fingerprint(inputs["db"], inputs.get("tree_version"), self.parts)
        except Exception:  # noqa: BLE001 - a missing/locked db just means "do not cache"
            return None


@task(name="score", tags=[LLM_TAG], retries=1, retry_delay_seconds=10, timeout_seconds=6 * 3600,
      cache_policy=stage_cache_policy(ALGORITHM_VERSION)
      + StoreContent(parts=("datasets", "sources", "grounding", "judgements")),
      persist_result=True, result_serializer="json")
def score(db: str, cfg: dict, tree_version: str) -> dict:
    """Write ``scores`` for ``tree_version``; returns counts and the score distributions."""
    return run_score(db, cfg, tree_version)
