"""Target distributions, KL, quotas."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from tagtree.align import (
    ancestor_at,
    kl_divergence,
    largest_remainder,
    primary_leaves,
    smoothed,
)
from tagtree.vectors import l1_normalise_rows, l2_normalise_rows
from tests.support.sample_trees import balanced_tree


def test_smoothing_keeps_kl_finite_and_zero_for_identical_distributions():
    p = smoothed(np.array([3.0, 1.0, 0.0]), 0.01)
    assert p.min() > 0 and np.isclose(p.sum(), 1)
    assert kl_divergence(p, p) == 0
    q = smoothed(np.array([0.0, 0.0, 5.0]), 0.01)
    assert np.isfinite(kl_divergence(p, q)) and kl_divergence(p, q) > 1
    np.testing.assert_allclose(smoothed(np.zeros(4), 0.01), 0.25)


@given(st.lists(st.floats(0, 10), min_size=1, max_size=30), st.integers(0, 200))
def test_largest_remainder_sums_exactly(weights, total):
    out = largest_remainder(np.array(weights), total)
    assert out.min() >= 0
    assert out.sum() == (total if sum(weights) > 0 else 0)


def test_largest_remainder_is_proportional():
    np.testing.assert_array_equal(largest_remainder(np.array([0.5, 0.3, 0.2]), 10), [5, 3, 2])


def test_rows_normalise_and_primary_leaf():
    g = sp.csr_matrix(np.array([[1.0, 3.0], [0, 0], [2.0, 2.0]]))
    n = l1_normalise_rows(g)
    np.testing.assert_allclose(n.toarray(), [[0.25, 0.75], [0, 0], [0.5, 0.5]])
    np.testing.assert_array_equal(primary_leaves(n), [1, -1, 0])


def test_ancestor_at_level():
    tree = balanced_tree(2, 2)
    np.testing.assert_array_equal(ancestor_at(tree.parent, tree.level, np.arange(4), 1),
                                  [4, 4, 5, 5])
    np.testing.assert_array_equal(ancestor_at(tree.parent, tree.level, np.arange(4), 0),
                                  [0, 1, 2, 3])


def test_l2_rows_have_unit_length_and_zero_rows_stay_zero():
    x = l2_normalise_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert x.dtype == np.float32
    assert np.allclose(x, [[0.6, 0.8], [0.0, 0.0]])
