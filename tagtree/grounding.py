"""Grounding (tree stage): annotations + tag_leaf -> instance_nodes (weights on leaves + ancestors).

An instance's weight on a leaf is the share of its canonical tags that fall in that leaf (rows
sum to 1); an ancestor's weight is the sum over its leaves, so every level also sums to 1. Tags
unknown to the tree are placed on the nearest existing leaf centroid (incremental grounding);
the share of them farther than the tree's own tags usually are is the drift statistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tagtree.hierarchy import KnowledgeTree


def leaf_weight_matrix(instance_index: np.ndarray, leaf_index: np.ndarray, n_instances: int,
                       n_leaves: int) -> sp.csr_matrix:
    """(n_instances x n_leaves): one (instance, leaf) pair per grounded tag occurrence in; each
    non-empty row normalised to sum 1 (duplicates add up)."""
    instance_index = np.asarray(instance_index, np.int64)
    leaf_index = np.asarray(leaf_index, np.int64)
    m = sp.csr_matrix((np.ones(len(instance_index), np.float32), (instance_index, leaf_index)),
                      shape=(n_instances, n_leaves))
    m.sum_duplicates()
    totals = np.asarray(m.sum(axis=1)).ravel()
    scale = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
    return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ m)


def node_weight_matrix(leaf_weights: sp.csr_matrix, tree: KnowledgeTree) -> sp.csr_matrix:
    """(n_instances x n_nodes): leaf weights pushed up to every ancestor."""
    return sp.csr_matrix(leaf_weights @ tree.leaf_ancestors())


def far_similarity(member_similarity: np.ndarray, quantile: float = 0.05) -> float:
    """Cosine similarity to the nearest leaf below which a tag counts as "far": the ``quantile``
    of the tree's own tags' similarity to their leaf centroid (calibrated per tree; pass the
    hold-out similarities, NaNs are ignored)."""
    member_similarity = np.asarray(member_similarity, dtype=np.float64)
    member_similarity = member_similarity[~np.isnan(member_similarity)]
    if len(member_similarity) == 0:
        return 0.0
    return float(np.quantile(member_similarity, quantile))


@dataclass
class Placement:
    leaf: np.ndarray  # nearest leaf per new tag
    similarity: np.ndarray  # cosine similarity to that leaf's centroid
    far: np.ndarray  # bool: farther than the tree's own tags usually are

    @property
    def drift(self) -> float:
        """Share of the new tags far from every leaf (0 when there are none)."""
        return float(self.far.mean()) if len(self.far) else 0.0


class NearestLeaf:
    """Incremental grounding: new tag vectors -> nearest existing leaf centroid (exact inner
    product search; leaves are few compared to tags)."""

    def __init__(self, far_below: float):
        self.far_below = far_below

    def fit(self, leaf_centroids: np.ndarray):
        import faiss

        c = np.ascontiguousarray(leaf_centroids, dtype=np.float32)
        self.index_ = faiss.IndexFlatIP(c.shape[1])
        self.index_.add(c)
        return self

    def place(self, vectors: np.ndarray) -> Placement:
        if len(vectors) == 0:
            return Placement(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool))
        sims, idx = self.index_.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
        return Placement(idx[:, 0].astype(np.int64), sims[:, 0], sims[:, 0] < self.far_below)
