"""Baselines behind the TAGS interface."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tagtree.baselines import (
    DeitaSampler,
    InstagSampler,
    KCenterSampler,
    QualitySampler,
    RandomSampler,
    make_selector,
)
from tagtree.errors import TagtreeError
from tagtree.sampling import METHODS, SelectionProblem
from tagtree.scoring import TreeScorer
from tests.support.sample_trees import balanced_tree, random_pool


def make(n=60, emb=True, seed=0):
    tree = balanced_tree(3, 4)
    s = TreeScorer().fit(tree, random_pool(n, 12, seed=seed))
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n, 8)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return SelectionProblem(tree, s.weights_, s.quality_, s.ic_, embeddings=e if emb else None)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k", [0, 1, 25, 60, 100])
def test_every_method_returns_distinct_rows_within_budget(method, k):
    p = make()
    sel = make_selector(method).fit(p, k).selected_
    assert len(sel) == min(k, 60) and len(set(sel.tolist())) == len(sel)
    assert sel.dtype == np.int64 and (len(sel) == 0 or (sel.min() >= 0 and sel.max() < 60))


def test_quality_takes_the_top():
    p = make()
    sel = QualitySampler().fit(p, 5).selected_
    assert set(sel.tolist()) == set(np.argsort(-p.quality, kind="stable")[:5].tolist())


def test_random_depends_on_the_seed_only():
    p = make()
    a, b = RandomSampler(1).fit(p, 10).selected_, RandomSampler(1).fit(p, 10).selected_
    assert a.tolist() == b.tolist()
    assert a.tolist() != RandomSampler(2).fit(p, 10).selected_.tolist()


def test_instag_takes_complex_instances_that_add_new_tags():
    tree = balanced_tree(2, 2)
    g = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0.0]]))
    s = TreeScorer().fit(tree, g)
    p = SelectionProblem(tree, s.weights_, s.quality_, s.ic_)
    # row 0 has most tags; row 1 adds nothing new; row 2 adds leaf 3
    assert InstagSampler().fit(p, 2).selected_.tolist() == [0, 2]


def test_deita_skips_near_copies_of_better_instances():
    p = make(n=4)
    p.embeddings = np.eye(4, dtype=np.float32)[[0, 0, 1, 2]]
    p.quality = np.array([0.9, 0.8, 0.7, 0.6])
    assert DeitaSampler(threshold=0.9).fit(p, 3).selected_.tolist() == [0, 2, 3]
    assert DeitaSampler(threshold=0.9).fit(p, 4).selected_.tolist() == [0, 2, 3, 1]
    assert DeitaSampler(threshold=0.9, chunk=1).fit(p, 3).selected_.tolist() == [0, 2, 3]


def test_kcenter_spreads_out():
    p = make(n=5)
    p.embeddings = np.eye(3, dtype=np.float32)[[0, 0, 0, 1, 2]]
    p.quality = np.array([0.9, 0.1, 0.1, 0.1, 0.1])
    assert sorted(KCenterSampler().fit(p, 3).selected_.tolist()) == [0, 3, 4]
    sub = KCenterSampler(max_pool=3).fit(make(n=50), 2).selected_
    assert len(sub) == 2


def test_embedding_methods_explain_a_missing_embedding():
    for method in ("deita", "kcenter"):
        with pytest.raises(TagtreeError, match="embeddings"):
            make_selector(method).fit(make(emb=False), 3)
    with pytest.raises(TagtreeError, match="unknown method"):
        make_selector("best")
