"""Tree tasks: annotations -> tags, tag_embeddings -> trees, tree_nodes, tag_leaf
(``tagtree.stages.tree``); one ``cluster-level`` run per level of the tree.

Caching is by content, in the store, rather than by Prefect inputs: ``(db, cfg)`` does not change
when new annotations arrive, so an ``INPUTS`` cache would return stale trees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext

from tagtree.stages.tree import build_tree as build_tree_stage
from tagtree.tree import ALGORITHM_VERSION, TreeBuilder
from tasks.policies import stage_cache_policy


class _Build:
    """The builder and its state, handed to a nested task as one opaque object: Prefect walks
    dataclass/list parameters looking for futures, and the state holds every tag."""

    __slots__ = ("builder", "state")

    def __init__(self, builder: TreeBuilder, state):
        self.builder, self.state = builder, state


# Nested in build-tree (which is cached as a whole): one run per level in the graph, with its
# own timing and retry. fit_level changes the state only once the level is complete, so a retry
# starts the level over from the same state.
@task(name="cluster-level", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
      timeout_seconds=4 * 3600)
def cluster_level(build: _Build) -> dict:
    """One level of the tree: k-means over the level below, oversize split, names."""
    level = build.builder.fit_level(build.state)
    return {"level": len(build.state.levels) - 1, "nodes": len(level.names),
            "top": build.state.done}


def _fit_level_as_task(builder: TreeBuilder, state) -> dict:
    depth = len(state.levels)
    return cluster_level.with_options(task_run_name=f"cluster-level-{depth}")(
        _Build(builder, state))


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


# Cached on inputs + task source + algorithm version + the annotations' content, results
# persisted: a second identical run is served from the cache. Inside a run the tree is also
# content-addressed in the store (an existing version is reused), so a cache miss is still cheap.
_TREE_CACHE = {"cache_policy": stage_cache_policy(ALGORITHM_VERSION) + AnnotationsContent(),
               "persist_result": True, "result_serializer": "json"}


@task(name="build-tree", retries=2, retry_delay_seconds=10, timeout_seconds=4 * 3600,
      **_TREE_CACHE)
def build_tree(db: str, cfg: dict, tagger: str | None = None) -> dict:
    """annotations -> tags, tag_aliases, tag_embeddings, trees, tree_nodes, tag_leaf.
    Returns tree_version, tagger, n_tags, n_leaves, levels, merged, embedded_new, reused..."""
    return build_tree_stage(db, config=cfg, tagger=tagger, fit_level=_fit_level_as_task).figures
