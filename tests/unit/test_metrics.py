"""Selection metrics on constructed trees."""

from __future__ import annotations

import numpy as np
import pytest

from tagtree.metrics import count_near_duplicates, evaluate, pool_kl
from tagtree.sampling import SelectionProblem
from tagtree.scoring import TreeScorer
from tests.support.sample_trees import balanced_tree, one_leaf_pool


def make(counts, target=None, emb=None):
    tree = balanced_tree(2, 2)
    g, leaf_of = one_leaf_pool(counts, 4)
    s = TreeScorer().fit(tree, g)
    return SelectionProblem(tree, s.weights_, s.quality_, s.ic_, embeddings=emb,
                            target_mass=target), leaf_of


def test_coverage_entropy_and_same_leaves():
    p, _ = make([2, 2, 2, 2])
    m = evaluate(p, [0, 2, 4, 6])  # one per leaf
    assert m["leaf_coverage"] == 1.0
    assert m["entropy_l0"] == pytest.approx(1.0) and m["entropy_l1"] == pytest.approx(1.0)
    assert "entropy_l2" not in m  # a single root has no spread
    assert m["same_leaves"] == 0
    skew = evaluate(p, [0, 1])  # both on leaf 0
    assert skew["leaf_coverage"] == 0.25 and skew["entropy_l0"] == 0 and skew["same_leaves"] == 1
    assert evaluate(p, [])["leaf_coverage"] == 0


def test_kl_to_target_before_and_after():
    p, _ = make([4, 4, 4, 4], target=np.array([1.0, 0, 0, 0]))
    on_target = evaluate(p, [0, 1, 2])["kl_target"]
    off_target = evaluate(p, [4, 8, 12])["kl_target"]
    assert on_target < pool_kl(p) < off_target
    assert "kl_target" not in evaluate(make([1, 1, 1, 1])[0], [0])


def test_near_duplicates_only_count_later_copies():
    emb = np.eye(4, dtype=np.float32)[[0, 0, 1, 2]]
    assert count_near_duplicates(emb, np.array([0, 1, 2, 3]), 0.95) == 1
    assert count_near_duplicates(emb, np.array([0, 1, 2, 3]), 0.95, chunk=1) == 1
    assert count_near_duplicates(emb, np.array([0, 2, 3]), 0.95) == 0
