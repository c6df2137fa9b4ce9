"""Tree building (tree stage): tags + tag_embeddings -> named KnowledgeTree (tree_nodes, tag_leaf).

Clio-style, level by level from the leaves up: spherical k-means of the current level's vectors
(FAISS; two-stage IVF-style when k is large, so 1M tags never meet an n x k distance matrix of
full size), optional LLM refinement of each level (``tagtree.refine``), names from central and
frequent member tags otherwise, and the clusters' centroids become the next level's points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

# The clustering helpers are imported from here by callers of earlier versions.
from tagtree.clustering import (  # noqa: F401
    compact,
    consensus_kmeans,
    group_means,
    grouped_kmeans,
    kmeans,
    kmeans_pp_init,
    single_threaded,
    split_oversized,
    two_stage_kmeans,
)
from tagtree.hierarchy import KnowledgeTree
from tagtree.naming import sibling_unique, vocabulary_names
from tagtree.vectors import l2_normalise_rows

ALGORITHM_VERSION = "tree@8"  # bump when clustering or naming changes: trees are rebuilt


# -- context: what the instances say about a tag -----------------------------------------------
def tag_context_vectors(incidence: sp.spmatrix, instance_vectors: np.ndarray) -> np.ndarray:
    """(n_tags x d) each tag's context vector: the normalised mean of the (normalised) vectors
    of the instances it occurs in; zero for a tag that occurs in none.

    ``incidence`` is (n_instances x n_tags), non-zero where an instance carries a tag. Tags of
    one instance share its context, so tags that occur together end up together: the string of
    a keyphrase ("two scenarios", "following") says little about the subject it came from, the
    instances it occurs in say a lot."""
    m = sp.csr_matrix(incidence, dtype=np.float32)
    m.data[:] = 1.0
    x = l2_normalise_rows(np.asarray(instance_vectors, dtype=np.float32))
    sums = np.asarray(m.T @ x)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return np.where(norms > 1e-9, sums / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


def mix(strings: np.ndarray, context: np.ndarray | None, context_weight: float) -> np.ndarray:
    """normalise((1 - w) * string + w * context) per row; a row without context keeps its
    string vector (new tags grounded later have no context either)."""
    strings = l2_normalise_rows(strings)
    if context is None or context_weight <= 0:
        return strings
    has = (np.linalg.norm(context, axis=1) > 0)[:, None]
    w = np.where(has, context_weight, 0.0).astype(np.float32)
    return l2_normalise_rows((1.0 - w) * strings + w * l2_normalise_rows(context))


# -- naming without an LLM ----------------------------------------------------------------------
def representative_tags(tag_node: np.ndarray, n_nodes: int, tag_vectors: np.ndarray,
                        node_vectors: np.ndarray, freqs: np.ndarray, *, top: int = 5,
                        freq_weight: float = 0.15) -> list[list[int]]:
    """Per node, up to ``top`` member tag indices, best first: closeness to the node's centroid
    plus a small bonus for frequency (common tags read better than rare phrasings)."""
    central = np.einsum("ij,ij->i", tag_vectors, node_vectors[tag_node])
    lf = np.log1p(freqs.astype(np.float64))
    score = central + freq_weight * lf / max(lf.max(), 1e-9)
    order = np.lexsort((-score, tag_node))
    starts = np.searchsorted(tag_node[order], np.arange(n_nodes + 1))
    return [order[starts[i]:min(starts[i + 1], starts[i] + top)].tolist() for i in range(n_nodes)]


def distinctive_first(reps: list[list[int]], tag_node: np.ndarray, tag_vectors: np.ndarray,
                      node_vectors: np.ndarray, freqs: np.ndarray, tags: list[str], *,
                      weight: float = 0.5, freq_weight: float = 0.3, word_penalty: float = 0.08,
                      top: int = 5, max_nodes: int = 2000) -> list[list[int]]:
    """Re-rank each node's candidates by how much closer they are to their own node than to any
    sibling node (generic tags like "text" sit between clusters and lose), by frequency, and
    by brevity (category names are short; "honey lime fruit" is a member, not a category).
    The distinctiveness term is skipped on levels with more than ``max_nodes`` nodes."""
    flat = np.array([t for r in reps for t in r], dtype=np.int64)
    if not len(flat):
        return reps
    sims = tag_vectors[flat] @ node_vectors.T if len(node_vectors) <= max_nodes else None
    own = np.einsum("ij,ij->i", tag_vectors[flat], node_vectors[tag_node[flat]])
    margin = np.zeros(len(flat))
    if sims is not None and len(node_vectors) > 1:
        sims[np.arange(len(flat)), tag_node[flat]] = -np.inf
        margin = own - sims.max(axis=1)
    lf = np.log1p(freqs[flat].astype(np.float64))
    lf = lf / max(float(np.log1p(freqs.max())), 1e-9)
    extra_words = np.array([max(0, len(tags[t].split()) - 2) for t in flat])
    total = own + weight * margin + freq_weight * lf - word_penalty * extra_words
    score = dict(zip(flat.tolist(), total.tolist(), strict=True))
    return [sorted(r, key=lambda t: -score[t])[:top] for r in reps]


def _stems(tag: str) -> set[str]:
    """Crude word stems: "projects / head project" and "words / words mischance" repeat a stem."""
    return {w[:5] for w in tag.split() if len(w) >= 3}


def extractive_names(reps: list[list[int]], tags: list[str], tag_vectors: np.ndarray,
                     parts: int, *, distinct_below: float = 0.75):
    """Name = the best representative tag, or for upper levels the best ``parts`` mutually
    distinct ones joined with " / "; description lists the representatives."""
    names, descriptions = [], []
    for rep in reps:
        chosen: list[int] = []
        for t in rep:
            if len(chosen) == parts:
                break
            if all(float(tag_vectors[t] @ tag_vectors[c]) < distinct_below
                   and not _stems(tags[t]) & _stems(tags[c]) for c in chosen):
                chosen.append(t)
        names.append(" / ".join(tags[t] for t in chosen) if chosen else "(empty)")
        descriptions.append("e.g. " + ", ".join(tags[t] for t in rep))
    return names, descriptions


def member_names(tag_node: np.ndarray, n_nodes: int, x: np.ndarray, freqs: np.ndarray,
                 tags: list[str], depth: int, parts: int = 2, centroids: np.ndarray | None = None):
    """(representatives, names, descriptions) of one level's nodes from their member tags:
    leaves by their best tag, upper levels by ``parts`` distinctive members joined."""
    if centroids is None:
        centroids = group_means(x, tag_node, n_nodes)
    reps = representative_tags(tag_node, n_nodes, x, centroids, freqs, top=12)
    if depth > 0:
        reps = distinctive_first(reps, tag_node, x, centroids, freqs, tags)
    else:
        reps = [r[:5] for r in reps]
    names, descriptions = extractive_names(reps, tags, x, 1 if depth == 0 else parts)
    return reps, names, descriptions


def silhouette(x: np.ndarray, labels: np.ndarray, seed: int = 0, sample: int = 3000) -> float:
    """Mean cosine silhouette of a clustering (on a random sample of at most ``sample`` items);
    -1 when there is a single cluster or every item is its own."""
    from sklearn.metrics import silhouette_score

    k = len(np.unique(labels))
    if k < 2 or k >= len(labels):
        return -1.0
    return float(silhouette_score(x, labels, metric="cosine",
                                  sample_size=min(sample, len(labels)), random_state=seed))


def holdout_similarity(x: np.ndarray, leaf: np.ndarray, n_leaves: int) -> np.ndarray:
    """Each tag's cosine similarity to its leaf's centroid computed *without* the tag (NaN for
    single-tag leaves): what a new tag of the same kind would see, so drift thresholds
    calibrated on it do not flag in-distribution newcomers (in-sample similarity is inflated,
    most in small leaves)."""
    one_hot = sp.csr_matrix((np.ones(len(leaf), np.float32), (leaf, np.arange(len(leaf)))),
                            shape=(n_leaves, len(leaf)))
    sums = np.asarray(one_hot @ x)[leaf] - x
    norms = np.linalg.norm(sums, axis=1)
    sims = np.einsum("ij,ij->i", x, sums) / np.maximum(norms, 1e-12)
    return np.where(norms > 1e-6, sims, np.nan).astype(np.float32)


# -- the builder --------------------------------------------------------------------------------
@dataclass
class Level:
    labels: np.ndarray  # item of the level below (tags for level 0) -> node of this level
    names: list[str]
    descriptions: list[str]
    members: list[list[str]] = field(default_factory=list)  # representative tags, best first


@dataclass
class BuildState:
    """Where a bottom-up build stands: the levels so far and the items the next level groups
    (tags at first, then the nodes of the level below as centroids weighted by their size)."""

    tags: list[str]
    x: np.ndarray  # normalised tag string vectors: names, leaf centroids for grounding
    freqs: np.ndarray
    tag_node: np.ndarray  # each tag's node at the current top level
    items_vec: np.ndarray
    items_w: np.ndarray | None
    items_names: list[str]
    k: int  # clusters to ask for at the next level
    x_up: np.ndarray | None = None  # tag vectors whose node means the upper levels cluster
    levels: list[Level] = field(default_factory=list)
    done: bool = False
    # (incidence: instances x tags, instance vectors) for the top level (``tagtree.structure``)
    structure: tuple | None = None
    top_of_item: np.ndarray | None = None  # the fixed top node of each current item


class TreeBuilder:
    """Bottom-up level-wise tree over canonical tags.

    Parameters mirror ``tagtree.config.TreeConfig``: ``leaf_size`` (average tags per leaf, sets k of
    level 0), ``branching`` (average children per internal node), stop when a level has at most
    ``root_max`` nodes or ``max_depth`` levels sit above the leaves (the last allowed level is
    capped at ``root_max`` nodes). A cluster with more than ``max_fanout_factor`` times the
    average members is split (catch-all clusters of generic tags). ``refiner``: an object with
    ``refine_level`` (see ``tagtree.refine.LLMRefiner``) applied to levels >= ``refine_min_level``.

    With ``context`` vectors (``tag_context_vectors``) the leaves cluster
    ``mix(string, context, context_weight)`` and the upper levels the node means of
    ``mix(string, context, upper_context_weight)``: leaves follow which tags occur together,
    upper levels add what the tags mean. Names always come from the strings.

    ``vocabulary`` (a ``tagtree.naming.Vocabulary``): levels >= ``vocabulary_min_level`` are
    named by topic headings matched by embedding (``tagtree.naming.vocabulary_names``), nodes
    without a good match by their members; no two siblings end with the same name.
    """

    def __init__(self, *, branching: int = 8, leaf_size: int = 6, root_max: int = 20,
                 max_depth: int = 6, random_state: int = 0, refiner=None,
                 refine_min_level: int = 1, name_parts: int = 2, direct_max: int = 512,
                 max_fanout_factor: int = 3, context_weight: float = 0.0,
                 upper_context_weight: float = 0.0, k_search: bool = False,
                 k_search_max: int = 50_000, vocabulary=None, vocabulary_min_level: int = 1,
                 vocabulary_min_score: float = 0.35, vocabulary_distinct_weight: float = 0.5,
                 vocabulary_tier_penalty: float = 0.1, structure_weight: float = 0.0,
                 structure_neighbours: int = 10, consensus_runs: int = 0):
        self.branching = branching
        self.leaf_size = leaf_size
        self.root_max = root_max
        self.max_depth = max_depth
        self.random_state = random_state
        self.refiner = refiner
        self.refine_min_level = refine_min_level
        self.name_parts = name_parts
        self.direct_max = direct_max
        self.max_fanout_factor = max_fanout_factor
        self.context_weight = context_weight
        self.upper_context_weight = upper_context_weight
        self.k_search = k_search
        self.k_search_max = k_search_max
        self.vocabulary = vocabulary
        self.vocabulary_min_level = vocabulary_min_level
        self.vocabulary_min_score = vocabulary_min_score
        self.vocabulary_distinct_weight = vocabulary_distinct_weight
        self.vocabulary_tier_penalty = vocabulary_tier_penalty
        self.structure_weight = structure_weight
        self.structure_neighbours = structure_neighbours
        self.consensus_runs = consensus_runs

    def fit(self, tags: list[str], vectors: np.ndarray, freqs: np.ndarray | None = None,
            run_level=None, context: np.ndarray | None = None, structure: tuple | None = None):
        """Build the tree bottom-up. ``run_level(builder, state)`` builds each level (default
        ``TreeBuilder.fit_level``): a caller can wrap it to run, report or retry levels alone.
        ``context``: (n_tags x d) context vectors, zero rows where unknown. ``structure``:
        (incidence, instance_vectors), the instances x tags incidence and one vector per
        instance, from which the top level is partitioned (``structure_weight > 0``)."""
        state = self.begin(tags, vectors, freqs, context, structure)
        while not state.done:
            (run_level or TreeBuilder.fit_level)(self, state)
        return self.finish(state)

    # fit() in steps, so a caller can run (and report, retry) each level on its own.
    def begin(self, tags: list[str], vectors: np.ndarray, freqs: np.ndarray | None = None,
              context: np.ndarray | None = None, structure: tuple | None = None) -> BuildState:
        """The state before level 0: every tag is an item to cluster."""
        n = len(tags)
        if n == 0:
            raise ValueError("no tags to build a tree from")
        x = l2_normalise_rows(vectors)
        if context is not None and len(context) != n:
            raise ValueError("one context vector (or a zero row) per tag expected")
        freqs = np.ones(n, np.int64) if freqs is None else np.asarray(freqs, np.int64)
        return BuildState(tags=list(tags), x=x, freqs=freqs, tag_node=np.arange(n),
                          items_vec=mix(x, context, self.context_weight), items_w=None,
                          items_names=list(tags), k=max(1, math.ceil(n / self.leaf_size)),
                          x_up=mix(x, context, self.upper_context_weight),
                          structure=structure if self.structure_weight > 0 else None)

    def fit_level(self, state: BuildState) -> Level:
        """Cluster the current items into the next level up, name it, and advance ``state``
        (``state.done`` once this level is the top)."""
        depth = len(state.levels)
        k = state.k
        if depth == self.max_depth:  # max_depth levels above the leaves: this is the last
            k = min(k, self.root_max)
        fixed = state.top_of_item
        # A middle level needs at least twice the top's nodes to say something the top does not.
        is_top = fixed is not None and (k < 2 * (int(fixed.max()) + 1)
                                        or depth == self.max_depth)
        if is_top:  # the top level was partitioned from the leaves' structure
            labels = compact(fixed)
        elif fixed is not None:  # a middle level: nested in the top partition
            labels = grouped_kmeans(state.items_vec, fixed, k, weights=state.items_w,
                                    seed=self.random_state + 1000 * depth,
                                    direct_max=self.direct_max)
        else:
            labels = self._cluster(state, depth, k)
        # Catch-all clusters (generic tags crowd together) are split: at most
        # max_fanout_factor x the average members (leaf_size, or branching above).
        target = self.leaf_size if depth == 0 else self.branching
        if depth < self.max_depth and not is_top:
            labels = split_oversized(state.items_vec, labels, target,
                                     self.max_fanout_factor * target, self.random_state)
        level, tag_node, _ = self._name_level(
            depth, labels, state.tag_node, state.x, state.freqs, state.tags, state.items_names,
            state.items_vec, state.x_up)
        x_up = state.x if state.x_up is None else state.x_up
        n_nodes = len(level.names)
        centroids = group_means(x_up, tag_node, n_nodes)
        if fixed is not None:  # each new node lies inside one top node: carry it up
            top_of_node = np.empty(n_nodes, np.int64)
            top_of_node[level.labels] = fixed  # (after an LLM refiner's merges, if any)
        elif depth == 0 and state.structure is not None and n_nodes > self.root_max:
            top_of_node = self.top_partition(state.structure, tag_node, n_nodes, centroids)
        else:
            top_of_node = None
        # The state changes only here, once the level is complete (a retried level starts over).
        state.tag_node, state.top_of_item = tag_node, top_of_node
        state.levels.append(level)
        stalled = depth > 0 and n_nodes == len(state.items_names)  # k-means could not reduce
        # With a fixed top partition only the top level ends the build (or the depth cap).
        if (is_top or depth == self.max_depth or stalled
                or (n_nodes <= self.root_max and top_of_node is None)):
            state.done = True
            return level
        sizes = np.bincount(state.tag_node, minlength=n_nodes)
        state.items_vec, state.items_w, state.items_names = (
            centroids, sizes.astype(np.float32), level.names)
        state.k = self.next_k(n_nodes)
        return level

    def top_partition(self, structure: tuple, tag_leaf: np.ndarray, n_leaves: int,
                      centroids: np.ndarray) -> np.ndarray:
        """Each leaf's top-level node: the consensus of weighted spherical k-means runs of
        ``[centroid, structure_weight * spectral]`` (``tagtree.structure.leaf_structure``; the
        instance mass of a leaf is its weight), with as many nodes as the level-by-level
        ratios give the top (``planned_top_k``)."""
        from tagtree.structure import leaf_structure

        incidence, instance_vectors = structure
        k_top = self.planned_top_k(n_leaves)
        spectral, mass = leaf_structure(incidence, instance_vectors, tag_leaf, n_leaves, k_top,
                                        neighbours=self.structure_neighbours,
                                        seed=self.random_state)
        z = np.hstack([centroids, self.structure_weight * spectral]).astype(np.float32)
        w = (mass + 1e-6 * max(float(mass.max()), 1.0)).astype(np.float32)  # untouched leaves
        # One partition decides every top node: all leaves in training (FAISS would sample
        # 256 per centroid). The consensus of ``consensus_runs`` runs (docs/tree.md, 4b);
        # 0 = the best objective of up to 20 restarts within a fixed budget of work, as before.
        if self.consensus_runs > 0:
            return consensus_kmeans(z, k_top, weights=w, seed=self.random_state + 999,
                                    runs=self.consensus_runs)
        restarts = int(np.clip(4e9 / max(1.0, z.size * k_top), 1, 20))
        return kmeans(z, k_top, weights=w, seed=self.random_state + 999, restarts=restarts,
                      small_work=np.inf, max_points_per_centroid=len(z))

    def planned_top_k(self, n_leaves: int) -> int:
        """The top level's node count that the ratios (``next_k``, ``root_max``, ``max_depth``)
        give a tree with ``n_leaves`` leaves."""
        n, depth = n_leaves, 0
        while True:
            depth += 1
            k = self.next_k(n)
            if depth == self.max_depth:
                k = min(k, self.root_max)
            if k <= self.root_max or depth == self.max_depth or k >= n:
                return max(1, min(k, n))
            n = k

    def _cluster(self, state: BuildState, depth: int, k: int) -> np.ndarray:
        """k-means of the level's items; with ``k_search`` the k among ``k_candidates`` around
        the asked-for one whose clustering has the best silhouette (cosine, on a sample), below
        the top level: the level sizes follow the data instead of a fixed ratio (a planted set
        of 32 subtopics got 43 leaves from leaf_size = 6, splitting subtopics that a budget then
        covered twice)."""
        # Upper levels are small and one bad seed there misplaces a whole branch: restart.
        def run(kk: int) -> np.ndarray:
            return two_stage_kmeans(state.items_vec, kk, weights=state.items_w,
                                    seed=self.random_state + 1000 * depth,
                                    direct_max=self.direct_max,
                                    restarts=1 if depth == 0 else 20)

        n = len(state.items_vec)
        candidates = self.k_candidates(k, n, top=k <= self.root_max)
        if not self.k_search or n > self.k_search_max or len(candidates) < 2:
            return run(k)
        scores: dict[int, tuple[float, np.ndarray]] = {}

        def score(kk: int) -> float:
            if kk not in scores:
                labels = run(kk)
                scores[kk] = (silhouette(state.items_vec, labels, self.random_state), labels)
            return scores[kk][0]

        top = k <= self.root_max
        for kk in candidates:
            score(kk)
        if not top:  # refine around the best: steps of 2**(1/4), 2**(1/8)
            for step in (2 ** 0.25, 2 ** 0.125):
                best = max(scores, key=lambda c: (scores[c][0], -c))
                for kk in {round(best * step), round(best / step)}:
                    if 2 <= kk < n:
                        score(kk)
        best = max(scores, key=lambda c: (scores[c][0], -c))
        return scores[best][1]

    def k_candidates(self, k: int, n: int, *, top: bool) -> list[int]:
        """Cluster counts tried around k: a factor of 2 either way in steps of sqrt(2); the top
        level (k <= root_max) is not searched."""
        if top:  # silhouette over a few dozen centroids is flat and noisy: next_k's count
            cands = []
        else:
            cands = (round(k * f) for f in (0.5, 0.71, 1.0, 1.41, 2.0))
        return sorted({c for c in cands if 2 <= c < n})

    def finish(self, state: BuildState):
        """Assemble the levels into ``tree_`` and the per-tag results."""
        self._assemble(state.levels, state.x, state.freqs)
        return self

    def next_k(self, n_nodes: int) -> int:
        """Nodes of the next level: n / branching, except that a top level (<= root_max nodes)
        keeps at least root_max / 2 of them when there are enough, so the root fan-out stays
        informative instead of collapsing to 2-4 catch-all nodes (a reconstruction choice)."""
        k = max(1, math.ceil(n_nodes / self.branching))
        if k <= self.root_max:
            k = max(k, min(self.root_max // 2, n_nodes // 2))
        return k

    def _name_level(self, depth, labels, tag_node, x, freqs, tags, item_names, item_vectors,
                    x_up=None):
        n_nodes = int(labels.max()) + 1
        tag_node_new = labels[tag_node]
        centroids = group_means(x, tag_node_new, n_nodes)
        reps, names, descriptions = member_names(tag_node_new, n_nodes, x, freqs, tags,
                                                 depth, self.name_parts, centroids)
        if self.vocabulary is not None and depth >= self.vocabulary_min_level:
            # Headings are matched on the nodes' meaning with their context (what the tags' own
            # instances are about), the vectors the upper levels cluster.
            node_vectors = centroids if x_up is None else group_means(x_up, tag_node_new, n_nodes)
            headings = vocabulary_names(node_vectors, self.vocabulary,
                                        min_score=self.vocabulary_min_score,
                                        distinct_weight=self.vocabulary_distinct_weight,
                                        tier_penalty=self.vocabulary_tier_penalty)
            names = [h or nm for h, nm in zip(headings, names, strict=True)]
        members = [[tags[t] for t in r] for r in reps]
        if self.refiner is not None and depth >= self.refine_min_level:
            labels, names, descriptions = self.refiner.refine_level(
                depth, labels, list(item_names), item_vectors, names, descriptions)
            n_nodes = int(labels.max()) + 1
            tag_node_new = labels[tag_node]
            centroids = group_means(x, tag_node_new, n_nodes)
            members = [[tags[t] for t in r] for r in
                       representative_tags(tag_node_new, n_nodes, x, centroids, freqs, top=5)]
        return Level(labels, names, descriptions, members), tag_node_new, centroids

    def _assemble(self, levels: list[Level], x: np.ndarray, freqs: np.ndarray) -> None:
        counts = [len(lv.names) for lv in levels]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        n_nodes = int(offsets[-1])
        parent = np.full(n_nodes, -1, np.int64)
        level = np.zeros(n_nodes, np.int64)
        for depth in range(len(levels)):
            level[offsets[depth]:offsets[depth + 1]] = depth
            if depth + 1 < len(levels):
                parent[offsets[depth]:offsets[depth + 1]] = (
                    levels[depth + 1].labels + offsets[depth + 1])
        leaf = levels[0].labels
        tag_node = leaf.copy()
        size = np.zeros(n_nodes, np.int64)
        centroids = np.zeros((n_nodes, x.shape[1]), np.float32)
        for depth in range(len(levels)):
            if depth:
                tag_node = levels[depth].labels[tag_node]
            size[offsets[depth]:offsets[depth + 1]] = np.bincount(tag_node, minlength=counts[depth])
            centroids[offsets[depth]:offsets[depth + 1]] = group_means(x, tag_node, counts[depth])
        names = sibling_unique([nm for lv in levels for nm in lv.names], parent,
                               [m for lv in levels
                                for m in (lv.members or [[] for _ in lv.names])])
        descriptions = [ds for lv in levels for ds in lv.descriptions]
        self.tree_ = KnowledgeTree(parent=parent, level=level, name=names,
                                   description=descriptions, size=size)
        self.centroids_ = centroids
        self.tag_leaf_ = leaf
        self.tag_similarity_ = np.einsum("ij,ij->i", x, centroids[leaf])
        self.holdout_similarity_ = holdout_similarity(x, leaf, counts[0])
        self.level_sizes_ = counts
        return None
