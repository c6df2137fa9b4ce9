"""Tree stage: annotations -> tags, tag_aliases, tag_embeddings -> trees, tree_nodes, tag_leaf.

Caching is by content, in the store: embeddings are kept per (tag, embedder fingerprint) and
computed only for tags without one; a tree version is a hash of the canonical tag set, the
config and the algorithm version, and an existing version is reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import time

import numpy as np
import orjson

from tagtree import normalize
from tagtree.config import Config
from tagtree.errors import TagtreeError
from tagtree.grounding import far_similarity
from tagtree.io.store import Store
from tagtree.io.vocabulary import load_vocabulary, vocabulary_fingerprint
from tagtree.stages.common import as_config, open_store
from tagtree.stages.embed import embed_missing, pick_tagger
from tagtree.stages.resources import Resources, resources_or_new
from tagtree.stages.results import TreeResult
from tagtree.tree import ALGORITHM_VERSION, TreeBuilder

# Knobs that do not change the tree (the tagger enters the version as its fingerprint).
GROUNDING_ONLY = {"drift_threshold", "far_quantile", "tagger", "reuse"}


def tree_version(tags: list[str], freqs: np.ndarray, cfg: Config, fingerprints: list[str]) -> str:
    h = hashlib.sha256()
    h.update(orjson.dumps([ALGORITHM_VERSION, cfg.tree.model_dump(exclude=GROUNDING_ONLY),
                           fingerprints]))
    for tag, freq in zip(tags, freqs.tolist(), strict=True):
        h.update(f"{tag}\x00{freq}\x01".encode())
    return "t" + h.hexdigest()[:15]


def prepare_tags(store: Store, cfg: Config, embedder, tagger: str
                 ) -> tuple[dict, dict[str, int], dict[str, str]]:
    """Fold, filter and merge the tagger's raw tags: (figures, {canonical: frequency},
    {raw: canonical}). Written as a tree version's ``tags``/``tag_aliases`` once the version
    is known (``build_tree_in``)."""
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
    figures = {"raw_tags": n_raw, "folded_tags": n_folded, "tags": len(freq),
               "merged": len(ordered) - len(freq), "embedded_new": embedded}
    return figures, {t: int(n) for t, n in freq.items()}, alias


class StoreNameCache:
    """The refiner's cache of cluster names in the store (``cluster_names``)."""

    def __init__(self, store: Store):
        self.store = store

    def get(self, key: str) -> tuple[str, str] | None:
        return self.store.cluster_name(key)

    def put(self, key: str, name: str, description: str) -> None:
        self.store.put_cluster_name(key, name, description)


def make_refiner(cfg: Config, embedder, chat, store: Store | None = None):
    """(refiner, fingerprints) for ``tree.refine_with_llm`` with ``chat``, else (None, [])."""
    if not cfg.tree.refine_with_llm:
        return None, []
    from tagtree.refine import PROMPT_VERSION, LLMRefiner

    cache = StoreNameCache(store) if store is not None else None
    return (LLMRefiner(chat, embedder, cache=cache), [chat.fingerprint, PROMPT_VERSION])


@contextlib.contextmanager
def open_refiner(cfg: Config, embedder, store: Store, resources: Resources | None = None):
    """(refiner, fingerprints) for the block: the chat model handed in, the configured endpoint,
    or the offline model on a local server for the build's duration; (None, []) without
    ``tree.refine_with_llm``."""
    if not cfg.tree.refine_with_llm:
        yield None, []
        return
    with resources_or_new(resources).open_chat(cfg) as chat:
        yield make_refiner(cfg, embedder, chat, store)


def build_tree_in(store: Store, cfg: Config, embedder, tagger: str | None = None,
                  refiner=None, refiner_fingerprints: list[str] | None = None,
                  fit_level=None) -> dict:
    """The body of ``build_tree`` on an open store (also used by the CLI and benchmarks).
    ``fit_level(builder, state)`` builds one level (default: in place; the task passes the
    ``cluster-level`` task, so each level is its own run in the graph)."""
    t0 = time.perf_counter()
    tagger = pick_tagger(store, tagger or cfg.tree.tagger)
    prep, freq, alias = prepare_tags(store, cfg, embedder, tagger)
    tags = normalize.order_by_frequency(freq)  # most frequent first, ties alphabetical
    freqs = np.array([freq[t] for t in tags], dtype=np.int64)
    # With context vectors the tree also depends on which tags occur together, which the tag
    # set and its frequencies do not pin down: the annotations' digest enters the version.
    with_context = cfg.tree.context != "none" and (cfg.tree.context_weight > 0
                                                   or cfg.tree.upper_context_weight > 0)
    version = tree_version(tags, freqs, cfg, [embedder.fingerprint, tagger,
                                              vocabulary_fingerprint(cfg.tree.vocabulary)]
                           + (refiner_fingerprints or [])
                           + ([store.annotations_digest(tagger)] if with_context else []))
    summary = {"tree_version": version, "tagger": tagger, "embedder": embedder.fingerprint} | prep
    if store.tree_exists(version):
        # Its tags were written when it was built (and its grounding has added aliases since).
        if not store.has_tags(version):
            store.write_tags(version, freq, alias)
        return summary | store.tree_stats(version) | {"reused": True}
    # This version's own tags (an older tree keeps its own); the context vectors read them.
    store.write_tags(version, freq, alias)
    t = cfg.tree
    builder = TreeBuilder(branching=t.branching, leaf_size=t.leaf_size, root_max=t.root_max,
                          max_depth=t.max_depth, random_state=t.seed, refiner=refiner,
                          refine_min_level=t.refine_min_level,
                          context_weight=t.context_weight,
                          upper_context_weight=t.upper_context_weight,
                          k_search=t.k_search,
                          vocabulary=load_vocabulary(t.vocabulary, embedder),
                          vocabulary_min_score=t.vocabulary_min_score,
                          structure_weight=t.structure_weight,
                          structure_neighbours=t.structure_neighbours,
                          consensus_runs=t.consensus_runs)
    vectors = store.tag_vectors(embedder.fingerprint, tags)
    context, structure = tag_contexts(store, cfg, embedder, tagger, tags, vectors, version)
    builder.fit(tags, vectors, freqs, run_level=fit_level, context=context, structure=structure)
    stats = {"tagger": tagger, "embedder": embedder.fingerprint, "n_tags": len(tags),
             "n_leaves": builder.tree_.n_leaves, "levels": builder.level_sizes_,
             "far_similarity": far_similarity(nearest_leaf_similarity(builder, vectors, t.seed)
                                              if context is not None
                                              else builder.holdout_similarity_, t.far_quantile),
             "build_seconds": round(time.perf_counter() - t0, 2)}
    if refiner is not None:  # how the LLM names went: failures kept their offline names
        stats["refine"] = refiner.stats()
    store.write_tree(version, builder.tree_, builder.centroids_, tags, builder.tag_leaf_,
                     builder.tag_similarity_, cfg.model_dump(include={"tree", "embed"}), stats)
    return summary | stats | {"reused": False}


def nearest_leaf_similarity(builder, vectors: np.ndarray, seed: int,
                            sample: int = 20_000) -> np.ndarray:
    """Each (sampled) tree tag's string similarity to its *nearest* leaf centroid: what a new
    tag of the same kind sees when it is grounded. With context vectors a leaf gathers tags
    that occur together, not tags that read alike, so the similarity to the tag's own leaf
    (the calibration without context) is low for every tag and nothing would count as far."""
    from tagtree.vectors import l2_normalise_rows

    rng = np.random.default_rng(seed)
    n = len(vectors)
    pick = np.sort(rng.choice(n, sample, replace=False)) if n > sample else np.arange(n)
    import faiss

    leaves = np.ascontiguousarray(builder.centroids_[: builder.tree_.n_leaves], np.float32)
    index = faiss.IndexFlatIP(leaves.shape[1])
    index.add(leaves)
    sims, idx = index.search(np.ascontiguousarray(l2_normalise_rows(vectors[pick]), np.float32),
                             min(2, len(leaves)))
    # The own leaf's centroid holds the tag itself: count it held out (NaN for a one-tag leaf).
    own = builder.tag_leaf_[pick]
    held = np.nan_to_num(builder.holdout_similarity_[pick], nan=-1.0)
    best = np.where(idx[:, 0] == own, held, sims[:, 0])
    if sims.shape[1] > 1:
        best = np.maximum(best, np.where(idx[:, 1] == own, held, sims[:, 1]))
    return best


def tag_contexts(store: Store, cfg: Config, embedder, tagger: str, tags: list[str],
                 vectors: np.ndarray, version: str):
    """(context, structure): each tag's context vector (``tagtree.tree.tag_context_vectors``)
    from the instances it occurs in (through tree ``version``'s aliases): their text embeddings
    (``tree.context = "instances"``, computed once per instance and kept in
    ``instance_embeddings``) or the mean string vector of their tags (``"tags"``, no extra
    embedding); and (incidence, instance vectors) for the top level's leaf graph
    (``tagtree.structure``). (None, None) for ``"none"``."""
    from tagtree.tree import tag_context_vectors

    mode = cfg.tree.context
    if mode == "none" or (cfg.tree.context_weight <= 0 and cfg.tree.upper_context_weight <= 0):
        return None, None
    ids, incidence = store.instance_tag_incidence(tagger, tags, version)
    inst = tag_context_vectors(incidence.T, vectors)  # an instance as the mean of its tags
    if mode == "instances":
        from tagtree.stages.sample import ensure_embeddings

        # Annotations whose instance row is gone (or never was) keep the tag mean.
        known = set(store.instance_ids_present(ids))
        rows = [i for i, iid in enumerate(ids) if iid in known]
        if rows:
            inst[rows] = ensure_embeddings(store, cfg, [ids[i] for i in rows], embedder)
    return tag_context_vectors(incidence, inst), (incidence, inst)


def build_tree(store, *, config=None, resources: Resources | None = None,
               tagger: str | None = None, fit_level=None) -> TreeResult:
    """Fold, filter, merge and embed the tagger's tags (the most used tagger when None), then
    cluster them into a named tree (``tree.refine_with_llm``: names refined by the chat
    model). An unchanged input reuses its tree version. ``fit_level``: see ``build_tree_in``."""
    config = as_config(config)
    resources = resources_or_new(resources)
    embedder = resources.embedder_for(config)
    with open_store(store) as store, open_refiner(config, embedder, store,
                                                  resources) as (refiner, fps):
        figures = build_tree_in(store, config, embedder, tagger, refiner, fps,
                                fit_level=fit_level)
    return TreeResult.of(figures)
