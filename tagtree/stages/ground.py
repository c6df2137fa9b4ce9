"""Ground stage: annotations + tag_leaf -> instance_nodes (and tag_leaf rows for tags new to the
tree); drift of the data against the tree."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tagtree import normalize
from tagtree.config import Config
from tagtree.grounding import NearestLeaf, leaf_weight_matrix, node_weight_matrix
from tagtree.stages.common import as_config, open_store
from tagtree.stages.embed import embed_missing, pick_tagger
from tagtree.stages.resources import Resources, resources_or_new
from tagtree.stages.results import GroundResult


def ground_in(store, cfg: Config, embedder, version: str | None = None,
              tagger: str | None = None, drift_datasets: list[str] | None = None) -> dict:
    """The body of ``ground`` on an open store: map new tags onto the nearest leaves, then
    write instance_nodes for every annotated instance (pool and target datasets).
    ``drift_datasets``: measure drift on these datasets' tag occurrences only (a run's new
    data), not diluted by everything the store already holds."""
    tree = store.load_tree(version)
    stats = store.tree_stats(tree.version)
    tagger = pick_tagger(store, tagger or stats.get("tagger"))
    # The tree's own raw -> canonical map grows by the raw tags new to it (other trees' maps
    # are theirs: a rebuild never changes how an older tree grounds).
    folded = {r: normalize.normalize_tag(r)
              for r in store.unknown_raw_tags(tagger, tree.version)}
    store.add_aliases(tree.version, {r: t for r, t in folded.items() if t})
    new_tags = store.unmapped_canonical_tags(tree.version, tagger)
    far_n = 0
    if new_tags:
        embed_missing(store, embedder, new_tags)
        placer = NearestLeaf(stats.get("far_similarity", 0.0)).fit(
            store.leaf_centroids(tree.version))
        placed = placer.place(store.tag_vectors(embedder.fingerprint, new_tags))
        store.add_tag_leaves(tree.version, new_tags, placed.leaf, placed.similarity)
        far_n = int(placed.far.sum())
    pairs = store.instance_tag_leaves(tree.version, tagger)
    ids = pc.unique(pairs.column("instance_id"))
    ids = ids.take(pc.sort_indices(ids))  # key order: the primary-key insert is 2x faster
    rows = pc.index_in(pairs.column("instance_id"), value_set=ids).to_numpy()
    leaves = leaf_weight_matrix(rows, pairs.column("leaf_id").to_numpy(), len(ids), tree.n_leaves)
    nodes = node_weight_matrix(leaves, tree)
    written = store.write_instance_nodes(tree.version, ids.to_pylist(), nodes)
    # Drift: share of tag occurrences in the data farther from their leaf than the tree's own
    # tags usually are (calibrated at tree.far_quantile when the tree was built).
    measured = pairs
    if drift_datasets:
        wanted = pa.array(store.pool_ids(drift_datasets), pa.string())
        measured = pairs.filter(pc.is_in(pairs.column("instance_id"), value_set=wanted))
    similarity = 1.0 - measured.column("distance").to_numpy(zero_copy_only=False)
    far_below = stats.get("far_similarity", 0.0)
    drift = float((similarity < far_below).mean()) if len(similarity) else 0.0
    return {"tree_version": tree.version, "instances": len(ids), "instance_nodes": written,
            "new_tags": len(new_tags), "far_new_tags": far_n, "drift": round(drift, 4),
            "rebuild_advised": drift > cfg.tree.drift_threshold}


def ground(store, *, config=None, resources: Resources | None = None,
           tree_version: str | None = None, tagger: str | None = None,
           drift_datasets: list[str] | None = None) -> GroundResult:
    """Place every annotated instance (pool and target) on tree ``tree_version`` (the latest
    when None), new tags on their nearest leaves; drift is measured on ``drift_datasets`` (all
    data when None)."""
    config = as_config(config)
    embedder = resources_or_new(resources).embedder_for(config)
    with open_store(store) as store:
        figures = ground_in(store, config, embedder, tree_version, tagger, drift_datasets)
    return GroundResult.of(figures)
