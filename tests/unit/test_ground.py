"""Grounding: leaf weights per instance, weights pushed to every ancestor, nearest-leaf
placement of new tags and the drift statistic."""

from __future__ import annotations

import numpy as np

from tagtree.grounding import NearestLeaf, far_similarity, leaf_weight_matrix, node_weight_matrix
from tagtree.hierarchy import KnowledgeTree

#      4        5        (level 1)
#    0   1    2   3      (leaves)
TREE = KnowledgeTree(parent=[4, 4, 5, 5, -1, -1], level=[0, 0, 0, 0, 1, 1],
                     name=list("abcdef"))


def test_leaf_and_node_weights():
    # instance 0: tags in leaves 0, 0, 2; instance 1: leaf 3; instance 2: no tags
    m = leaf_weight_matrix([0, 0, 0, 1], [0, 0, 2, 3], 3, 4)
    np.testing.assert_allclose(m.toarray(), [[2 / 3, 0, 1 / 3, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
                               rtol=1e-6)
    nodes = node_weight_matrix(m, TREE).toarray()
    np.testing.assert_allclose(nodes[0], [2 / 3, 0, 1 / 3, 0, 2 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(nodes[1], [0, 0, 0, 1, 0, 1])
    assert nodes[2].sum() == 0


def test_nearest_leaf_and_drift():
    centroids = np.eye(3, dtype=np.float32)
    placer = NearestLeaf(far_below=0.8).fit(centroids)
    new = np.array([[0.9, 0.1, 0], [0, 0.2, 0.98], [0.6, 0.6, 0.5]], np.float32)
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    p = placer.place(new)
    assert p.leaf.tolist() == [0, 2, 0] or p.leaf.tolist() == [0, 2, 1]
    assert p.far.tolist() == [False, False, True] and abs(p.drift - 1 / 3) < 1e-9
    assert placer.place(np.zeros((0, 3), np.float32)).drift == 0.0


def test_far_similarity_is_a_quantile_ignoring_nan():
    sims = np.array([0.5, 0.6, 0.7, 0.8, 0.9, np.nan])
    assert abs(far_similarity(sims, 0.25) - 0.6) < 1e-9
    assert far_similarity(np.array([np.nan]), 0.05) == 0.0
