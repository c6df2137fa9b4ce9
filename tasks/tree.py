"""Tree tasks: annotations -> tags, tag_embeddings -> trees, tree_nodes, tag_leaf
(``tagtree.stages.tree``); one ``cluster-level`` run per level of the tree.

No Prefect cache on build-tree: the tree is content-addressed in the store (a build whose tags,
vectors and knobs match an existing version reuses it), and an identical curate run does not call
build-tree at all (the data is grounded on the current tree), so a Prefect cache bought no Cached
state and cost a digest of every annotation per call.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tagtree.stages.tree import build_tree as build_tree_stage
from tagtree.tree import TreeBuilder


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


@task(name="build-tree", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10,
      timeout_seconds=4 * 3600)
def build_tree(db: str, cfg: dict, tagger: str | None = None) -> dict:
    """annotations -> tags, tag_aliases, tag_embeddings, trees, tree_nodes, tag_leaf.
    Returns tree_version, tagger, n_tags, n_leaves, levels, merged, embedded_new, reused..."""
    return build_tree_stage(db, config=cfg, tagger=tagger, fit_level=_fit_level_as_task).figures
