"""Tree statistics and instance scores."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tagtree.scoring import TreeScorer, distribution_summary, information_content
from tests.support.sample_trees import balanced_tree, one_leaf_pool


def test_mass_propagates_to_ancestors_and_ic_is_minus_log_share():
    tree = balanced_tree(2, 2)  # leaves 0-3, branches 4-5, root 6
    g, _ = one_leaf_pool([1, 3, 2, 2], 4)
    s = TreeScorer().fit(tree, g)
    np.testing.assert_allclose(s.mass_, [1, 3, 2, 2, 4, 4, 8])
    np.testing.assert_allclose(s.ic_, -np.log(np.array([1, 3, 2, 2, 4, 4, 8]) / 8))
    assert s.ic_[6] == 0  # everything is under the root: no information


def test_unreached_nodes_get_zero_ic():
    np.testing.assert_allclose(information_content(np.array([0.0, 2.0, 2.0]), 4.0),
                               [0, np.log(2), np.log(2)])


def test_richness_counts_shared_ancestors_once_and_prefers_rare_branches():
    tree = balanced_tree(2, 2)
    # row 0: two leaves of one branch; row 1: one leaf in each branch; rows 2-3 filler
    g = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]]))
    s = TreeScorer(richness_quantile=1.0).fit(tree, g)
    assert s.richness_[1] > s.richness_[0] > s.richness_[2]
    assert s.richness_.max() == pytest.approx(1.0)
    assert np.all((s.quality_ >= 0.2) & (s.quality_ <= 1.0))


def test_judge_enters_quality_with_its_weight_and_missing_ratings_fall_back():
    tree = balanced_tree(2, 2)
    g, _ = one_leaf_pool([1, 1, 1, 1], 4)
    ratings = np.array([6.0, 1.0, np.nan, 6.0])
    s = TreeScorer(judge_weight=0.5, quality_floor=0.0).fit(tree, g, ratings)
    np.testing.assert_allclose(s.judge_[[0, 1, 3]], [1.0, 0.0, 1.0])
    assert np.isnan(s.judge_[2])
    np.testing.assert_allclose(s.quality_[0], 0.5 * s.richness_[0] + 0.5)
    np.testing.assert_allclose(s.quality_[2], s.richness_[2])
    assert s.quality_[0] > s.quality_[1]
    assert s.summary()["judged"] == 3


def test_summary_flags_a_collapsed_score():
    assert distribution_summary(np.full(100, 0.7))["collapsed"]
    spread = distribution_summary(np.linspace(0, 1, 100))
    assert not spread["collapsed"] and spread["count"] == 100
    assert sum(spread["histogram"]) == 100
    assert distribution_summary(np.array([np.nan]))["collapsed"]


def test_grounding_must_match_the_tree():
    with pytest.raises(ValueError):
        TreeScorer().fit(balanced_tree(2, 2), sp.csr_matrix((3, 5)))
