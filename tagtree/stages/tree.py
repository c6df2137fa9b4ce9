"""Tree tasks: annotations -> tags, tag_embeddings -> trees, tree_nodes, tag_leaf -> instance_nodes.

Caching is by content, in the store, rather than by Prefect inputs: ``(db, cfg)`` does not change
when new annotations arrive, so an ``INPUTS`` cache would return stale trees. Embeddings are kept
per (tag, embedder fingerprint) and computed only for tags without one; a tree version is a hash
of the canonical tag set, the config and the algorithm version, and an existing version is reused.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext

from tagtree import normalize
from tagtree.config import Config
from tagtree.errors import TagtreeError
from tagtree.ground import NearestLeaf, far_similarity, leaf_weight_matrix, node_weight_matrix
from tagtree.io.store import Store
from tagtree.tree import ALGORITHM_VERSION, TreeBuilder
from tasks.policies import stage_cache_policy

EMBED_SHARD = 20_000  # tags embedded and written per shard: an interrupted run resumes from here
# Knobs that do not change the tree (the tagger enters the version as its fingerprint).
GROUNDING_ONLY = {"drift_threshold", "far_quantile", "tagger", "reuse"}


def pick_tagger(store: Store, wanted: str | None) -> str:
    taggers = store.taggers_with_tags()
    if not taggers:
        raise TagtreeError("no usable annotations with tags (run `tagtree annotate` first)")
    if wanted is None:
        return taggers[0][0]
    if wanted not in {t for t, _ in taggers}:
        raise TagtreeError(f"no annotations by tagger '{wanted}'; have: "
                           + ", ".join(t for t, _ in taggers))
    return wanted


def embed_missing(store: Store, embedder, tags: list[str], shard: int = EMBED_SHARD) -> int:
    """Embed the tags without a vector for this embedder, shard by shard; returns how many."""
    missing = store.tags_missing_embeddings(embedder.fingerprint, tags)
    for start in range(0, len(missing), shard):
        part = missing[start:start + shard]
        store.write_tag_embeddings(embedder.fingerprint, part, embedder.embed(part))
    return len(missing)


def tree_version(tags: list[str], freqs: np.ndarray, cfg: Config, fingerprints: list[str]) -> str:
    h = hashlib.sha256()
    h.update(orjson.dumps([ALGORITHM_VERSION, cfg.tree.model_dump(exclude=GROUNDING_ONLY),
                           fingerprints]))
    for tag, freq in zip(tags, freqs.tolist(), strict=True):
        h.update(f"{tag}\x00{freq}\x01".encode())
    return "t" + h.hexdigest()[:15]


def prepare_tags(store: Store, cfg: Config, embedder, tagger: str) -> dict:
    """Fold, filter and merge the tagger's raw tags; write tags and tag_aliases."""
    freq, alias = normalize.fold_counts(store.raw_tag_counts(tagger))
    n_raw, n_folded = len(alias), len(freq)
    freq, alias = normalize.filter_rare(freq, alias, cfg.tree.min_tag_freq)
    ordered = normalize.order_by_frequency(freq)
    if not ordered:
        raise TagtreeError(f"no tags left after min_tag_freq={cfg.tree.min_tag_freq}")
    embedded = embed_missing(store, embedder, ordered)
    vectors = store.tag_vectors(embedder.fingerprint, ordered)
    freq, alias, _ = normalize.merge_near_duplicates(freq, alias, ordered, vectors,
                                                     cfg.tree.merge_threshold)
    store.write_tags(freq, alias)
    return {"raw_tags": n_raw, "folded_tags": n_folded, "tags": len(freq),
            "merged": len(ordered) - len(freq), "embedded_new": embedded}


def make_refiner(cfg: Config, embedder):
    if not cfg.tree.refine_with_llm:
        return None, []
    from tagtree.io.chat import make_chat_model
    from tagtree.refine import LLMRefiner

    chat = make_chat_model(cfg)
    return LLMRefiner(chat, embedder), [chat.fingerprint]


def build_tree_in(store: Store, cfg: Config, embedder, tagger: str | None = None,
                  refiner=None, refiner_fingerprints: list[str] | None = None,
                  fit_level=None) -> dict:
    """The body of ``build_tree`` on an open store (also used by the CLI and benchmarks).
    ``fit_level(builder, state)`` builds one level (default: in place; the task passes the
    ``cluster-level`` task, so each level is its own run in the graph)."""
    t0 = time.perf_counter()
    tagger = pick_tagger(store, tagger or cfg.tree.tagger)
    prep = prepare_tags(store, cfg, embedder, tagger)
    tags, freqs = store.tag_frequencies()
    # With context vectors the tree also depends on which tags occur together, which the tag
    # set and its frequencies do not pin down: the annotations' digest enters the version.
    with_context = cfg.tree.context != "none" and (cfg.tree.context_weight > 0
                                                   or cfg.tree.upper_context_weight > 0)
    version = tree_version(tags, freqs, cfg, [embedder.fingerprint, tagger]
                           + (refiner_fingerprints or [])
                           + ([store.annotations_digest(tagger)] if with_context else []))
    summary = {"tree_version": version, "tagger": tagger, "embedder": embedder.fingerprint} | prep
    if store.tree_exists(version):
        return summary | store.tree_stats(version) | {"reused": True}
    t = cfg.tree
    builder = TreeBuilder(branching=t.branching, leaf_size=t.leaf_size, root_max=t.root_max,
                          max_depth=t.max_depth, random_state=t.seed, refiner=refiner,
                          refine_min_level=t.refine_min_level,
                          context_weight=t.context_weight,
                          upper_context_weight=t.upper_context_weight,
                          k_search=t.k_search)
    vectors = store.tag_vectors(embedder.fingerprint, tags)
    context = tag_contexts(store, cfg, embedder, tagger, tags, vectors)
    builder.fit(tags, vectors, freqs, run_level=fit_level, context=context)
    stats = {"tagger": tagger, "embedder": embedder.fingerprint, "n_tags": len(tags),
             "n_leaves": builder.tree_.n_leaves, "levels": builder.level_sizes_,
             "far_similarity": far_similarity(nearest_leaf_similarity(builder, vectors, t.seed)
                                              if context is not None
                                              else builder.holdout_similarity_, t.far_quantile),
             "build_seconds": round(time.perf_counter() - t0, 2)}
    store.write_tree(version, builder.tree_, builder.centroids_, tags, builder.tag_leaf_,
                     builder.tag_similarity_, cfg.model_dump(include={"tree", "embed"}), stats)
    return summary | stats | {"reused": False}


def nearest_leaf_similarity(builder, vectors: np.ndarray, seed: int,
                            sample: int = 20_000) -> np.ndarray:
    """Each (sampled) tree tag's string similarity to its *nearest* leaf centroid: what a new
    tag of the same kind sees when it is grounded. With context vectors a leaf gathers tags
    that occur together, not tags that read alike, so the similarity to the tag's own leaf
    (the calibration without context) is low for every tag and nothing would count as far."""
    from tagtree.tree import normalise_rows

    rng = np.random.default_rng(seed)
    n = len(vectors)
    pick = np.sort(rng.choice(n, sample, replace=False)) if n > sample else np.arange(n)
    import faiss

    leaves = np.ascontiguousarray(builder.centroids_[: builder.tree_.n_leaves], np.float32)
    index = faiss.IndexFlatIP(leaves.shape[1])
    index.add(leaves)
    sims, idx = index.search(np.ascontiguousarray(normalise_rows(vectors[pick]), np.float32),
                             min(2, len(leaves)))
    # The own leaf's centroid holds the tag itself: count it held out (NaN for a one-tag leaf).
    own = builder.tag_leaf_[pick]
    held = np.nan_to_num(builder.holdout_similarity_[pick], nan=-1.0)
    best = np.where(idx[:, 0] == own, held, sims[:, 0])
    if sims.shape[1] > 1:
        best = np.maximum(best, np.where(idx[:, 1] == own, held, sims[:, 1]))
    return best


def tag_contexts(store: Store, cfg: Config, embedder, tagger: str, tags: list[str],
                 vectors: np.ndarray) -> np.ndarray | None:
    """Each tag's context vector (``tagtree.tree.tag_context_vectors``) from the instances it
    occurs in: their text embeddings (``tree.context = "instances"``, computed once per
    instance and kept in ``instance_embeddings``) or the mean string vector of their tags
    (``"tags"``, no extra embedding); None for ``"none"``."""
    from tagtree.tree import tag_context_vectors

    mode = cfg.tree.context
    if mode == "none" or (cfg.tree.context_weight <= 0 and cfg.tree.upper_context_weight <= 0):
        return None
    ids, incidence = store.instance_tag_incidence(tagger, tags)
    inst = tag_context_vectors(incidence.T, vectors)  # an instance as the mean of its tags
    if mode == "instances":
        from tasks.sample import ensure_embeddings

        # Annotations whose instance row is gone (or never was) keep the tag mean.
        known = set(store.instance_ids_present(ids))
        rows = [i for i, iid in enumerate(ids) if iid in known]
        if rows:
            inst[rows] = ensure_embeddings(store, cfg, [ids[i] for i in rows], embedder)
    return tag_context_vectors(incidence, inst)


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


def ground_in(store: Store, cfg: Config, embedder, version: str | None = None,
              tagger: str | None = None, drift_datasets: list[str] | None = None) -> dict:
    """The body of ``ground`` on an open store: map new tags onto the nearest leaves, then
    write instance_nodes for every annotated instance (pool and target datasets).
    ``drift_datasets``: measure drift on these datasets' tag occurrences only (a run's new
    data), not diluted by everything the store already holds."""
    tree = store.load_tree(version)
    stats = store.tree_stats(tree.version)
    tagger = pick_tagger(store, tagger or stats.get("tagger"))
    folded = {r: normalize.normalize_tag(r) for r in store.unknown_raw_tags(tagger)}
    store.add_aliases({r: t for r, t in folded.items() if t})
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


def _open(db: str, cfg: dict):
    from tagtree.io.embedder import make_embedder

    config = Config.model_validate(cfg)
    return Store(db), config, make_embedder(config)


@task(name="embed-tags", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=10,
      timeout_seconds=4 * 3600)
def embed_tags(db: str, cfg: dict, tagger: str | None = None) -> dict:
    """annotations -> tag_embeddings for the folded tags still without a vector (shards of
    20K, each written when done: a retry resumes). ``build_tree`` then finds them cached."""
    store, config, embedder = _open(db, cfg)
    with store:
        tagger = pick_tagger(store, tagger or config.tree.tagger)
        freq, alias = normalize.fold_counts(store.raw_tag_counts(tagger))
        freq, _ = normalize.filter_rare(freq, alias, config.tree.min_tag_freq)
        new = embed_missing(store, embedder, normalize.order_by_frequency(freq))
    return {"tagger": tagger, "embedder": embedder.fingerprint, "tags": len(freq),
            "embedded_new": new}


@dataclass
class AnnotationsContent(CachePolicy):
    """Cache key part: a content hash of the annotations the stage reads (``db`` and ``cfg``
    do not change when new tags arrive). No key (no caching) when the store cannot be read."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
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
    store, config, embedder = _open(db, cfg)
    with store:
        refiner, fps = make_refiner(config, embedder)
        return build_tree_in(store, config, embedder, tagger, refiner, fps,
                             fit_level=_fit_level_as_task)


@task(name="ground", retries=2, retry_delay_seconds=10, timeout_seconds=2 * 3600, **_TREE_CACHE)
def ground(db: str, cfg: dict, tree_version: str | None = None, tagger: str | None = None,
           drift_datasets: list[str] | None = None) -> dict:
    """annotations + tag_leaf -> instance_nodes (and tag_leaf rows for tags new to the tree).
    Returns tree_version, instances, instance_nodes, new_tags, far_new_tags, drift (on
    ``drift_datasets`` when given) and rebuild_advised."""
    store, config, embedder = _open(db, cfg)
    with store:
        return ground_in(store, config, embedder, tree_version, tagger, drift_datasets)
