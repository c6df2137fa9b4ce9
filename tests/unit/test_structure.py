"""The leaf graph's spectral embedding and the top partition built from it (tagtree.structure,
TreeBuilder with ``structure``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tagtree.clustering import consensus_kmeans, grouped_kmeans
from tagtree.structure import instance_graph, leaf_shares, spectral_embedding
from tagtree.tree import TreeBuilder


def _two_blocks(n: int = 40) -> sp.csr_matrix:
    """Affinity of two cliques joined by one weak edge."""
    w = np.zeros((n, n))
    h = n // 2
    w[:h, :h] = 1.0
    w[h:, h:] = 1.0
    w[0, h] = w[h, 0] = 0.01
    return sp.csr_matrix(w)


def test_spectral_embedding_separates_the_blocks_of_a_graph():
    u = spectral_embedding(_two_blocks(), 2)
    h = 20
    assert u.shape == (40, 2)
    # within a block the rows agree, across blocks they are far apart
    assert np.min(u[:h] @ u[:h].T) > 0.99 and np.min(u[h:] @ u[h:].T) > 0.99
    assert np.max(u[:h] @ u[h:].T) < 0.5
    # deterministic, also on the sparse (eigsh) path
    big = sp.block_diag([_two_blocks(1200), _two_blocks(1200)]).tocsr()
    a, b = spectral_embedding(big, 4, seed=3), spectral_embedding(big, 4, seed=3)
    np.testing.assert_array_equal(a, b)


def test_instance_graph_is_symmetric_with_self_loops_and_leaf_shares_sum_to_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 8))
    g = instance_graph(x, neighbours=3, self_weight=2.0)
    assert abs(g - g.T).max() < 1e-12
    np.testing.assert_allclose(g.diagonal(), 2.0)
    assert (g.getnnz(axis=1) <= 1 + 2 * 3).all()
    inc = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1], [0, 0, 0]]))
    p = leaf_shares(inc, np.array([0, 1, 1]), 2).toarray()
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.0, 1.0], [0.0, 0.0]])


def test_grouped_kmeans_never_crosses_a_group():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    groups = rng.integers(0, 4, 200)
    labels = grouped_kmeans(x, groups, 20, seed=0)
    for c in np.unique(labels):
        assert len(np.unique(groups[labels == c])) == 1
    assert 15 <= len(np.unique(labels)) <= 25


def _top_of_tags(builder) -> np.ndarray:
    tree = builder.tree_
    root_of = np.arange(tree.n_nodes)
    for _ in range(tree.depth):  # climb to each node's top ancestor
        root_of = np.where(tree.parent[root_of] >= 0, tree.parent[root_of], root_of)
    return root_of[builder.tag_leaf_]


def test_the_top_level_follows_the_instances_and_every_level_nests():
    """Two topics whose tag strings are random, each instance carrying tags of one topic: with
    the pipeline's context and structure the top level splits along the topics, has the planned
    node count, and every level nests in the one above (a leaf's tags share one top node)."""
    from tagtree.tree import tag_context_vectors

    rng = np.random.default_rng(2)
    n_tags, n_inst = 240, 400
    topic_of_tag = np.arange(n_tags) % 2
    strings = rng.normal(size=(n_tags, 16)).astype(np.float32)
    inst_topic = rng.integers(0, 2, n_inst)
    rows, cols = [], []
    for i, t in enumerate(inst_topic):
        for j in rng.choice(np.flatnonzero(topic_of_tag == t), 4, replace=False):
            rows.append(i)
            cols.append(j)
    inc = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_inst, n_tags))
    centre = rng.normal(size=(2, 16))
    inst_vecs = (centre[inst_topic] + 0.8 * rng.normal(size=(n_inst, 16))).astype(np.float32)
    tags = [f"tag {i}" for i in range(n_tags)]
    b = TreeBuilder(leaf_size=4, branching=4, root_max=4, structure_weight=0.5,
                    context_weight=1.0, upper_context_weight=0.5, random_state=0).fit(
        tags, strings, context=tag_context_vectors(inc, inst_vecs), structure=(inc, inst_vecs))
    tree = b.tree_
    assert tree.depth >= 3
    assert len(tree.nodes_at(tree.depth - 1)) == b.planned_top_k(tree.n_leaves)
    for lv in range(tree.depth - 1):  # every node's parent is one level up
        nodes = tree.nodes_at(lv)
        assert (tree.level[tree.parent[nodes]] == lv + 1).all()
    tag_top = _top_of_tags(b)
    purity = sum(np.bincount(topic_of_tag[tag_top == v]).max()
                 for v in tree.nodes_at(tree.depth - 1)) / n_tags
    assert purity >= 0.95


def _blobs(n_per: int, k: int, d: int = 16, spread: float = 0.15, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    truth = np.repeat(np.arange(k), n_per)
    x = centres[truth] + spread * rng.normal(size=(len(truth), d))
    order = rng.permutation(len(truth))  # clusters not in input order
    return x[order].astype(np.float32), truth[order]


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_consensus_kmeans_recovers_separated_groups_deterministically():
    x, truth = _blobs(30, 6)
    labels = consensus_kmeans(x, 6, seed=4, runs=12)
    assert _same_partition(labels, truth)
    np.testing.assert_array_equal(labels, consensus_kmeans(x, 6, seed=4, runs=12))
    # edge cases: more clusters than items, one cluster
    assert consensus_kmeans(x[:5], 8).tolist() == [0, 1, 2, 3, 4]
    assert set(consensus_kmeans(x, 1).tolist()) == {0}
    with pytest.raises(ValueError, match="at least one run"):
        consensus_kmeans(x, 6, runs=0)


def test_consensus_kmeans_above_max_items_labels_every_item_from_the_heaviest_core():
    x, truth = _blobs(60, 5, seed=1)
    weights = np.random.default_rng(2).uniform(0.1, 1.0, len(x)).astype(np.float32)
    labels = consensus_kmeans(x, 5, weights=weights, seed=0, runs=8, max_items=100)
    assert labels.shape == (300,) and labels.min() == 0
    # the 200 items outside the 100-item core joined the consensus cluster of their own group
    assert _same_partition(labels, truth)
