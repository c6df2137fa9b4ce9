"""The length balance (tagtree.length_balance): exact swap costs, the band, the groups."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from tagtree.greedy import Block, Objective, lazy_greedy
from tagtree.length_balance import balance_length, length_ratio
from tagtree.sampling import SelectionProblem, TagsSampler
from tagtree.scoring import TreeScorer
from tests.support.sample_trees import balanced_tree, random_pool


def every_kind_objective(n: int, m: int, seed: int) -> Objective:
    rng = np.random.default_rng(seed)
    X = sp.random(n, m, density=0.3, random_state=seed, format="csr")
    q = sp.csr_matrix(rng.uniform(0.1, 1, (n, 1)))
    return Objective([Block(X, rng.uniform(0.5, 1, m), "facility"),
                      Block(X, rng.uniform(0.1, 0.3, m), "mass", shape="log1p"),
                      Block(X, rng.uniform(0.1, 0.3, m), "align", alpha=0.05),
                      Block(q, np.array([0.2]), "linear")])


@pytest.mark.parametrize("seed", range(3))
def test_drop_gives_the_totals_of_the_selection_without_the_pick(seed):
    obj = every_kind_objective(40, 12, seed)
    order = np.random.default_rng(seed).choice(40, 9, replace=False)
    obj.set_selection(order)
    picks = [b.X[order].tocsc() if b.kind == "facility" else None for b in obj.blocks]
    pos, row = 3, int(order[3])
    undo = [b.drop(row, pos, p) for b, p in zip(obj.blocks, picks, strict=True)]
    dropped = [b.c.copy() for b in obj.blocks]
    for b, u in zip(obj.blocks, undo, strict=True):
        b.restore(u)
    restored = [b.c.copy() for b in obj.blocks]
    obj.set_selection(np.delete(order, pos))
    for got, want in zip(dropped, (b.c for b in obj.blocks), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-12)
    obj.set_selection(order)
    for got, want in zip(restored, (b.c for b in obj.blocks), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_set_selection_matches_adding_the_rows_one_by_one():
    one, other = every_kind_objective(30, 8, 5), every_kind_objective(30, 8, 5)
    rows = np.array([4, 17, 2, 29])
    for r in rows:
        one.add(int(r))
    other.set_selection(rows)
    assert one.value() == pytest.approx(other.value(), abs=1e-12)


def f_value(obj: Objective, rows) -> float:
    obj.set_selection(np.asarray(rows, dtype=np.int64))
    return obj.value()


def test_the_cheapest_swap_into_the_band_is_taken():
    """Four groups of short instances and one long one per group: the greedy's picks are the
    short ones (higher facility value), their mean is far below the pool's; one swap suffices
    and the one taken is the cheapest of every swap that lands in the band (brute force)."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(4), 6)
    value = rng.uniform(0.5, 1.0, 24)
    lengths = rng.uniform(50, 100, 24)
    long_rows = np.arange(4) * 6 + 5
    value[long_rows] = rng.uniform(0.3, 0.45, 4)
    lengths[long_rows] = rng.uniform(900, 1100, 4)
    X = sp.csr_matrix((value, (np.arange(24), groups)), shape=(24, 4))
    obj = Objective([Block(X, np.ones(4), "facility")])
    order, _ = lazy_greedy(obj, 24, 4)
    assert length_ratio(lengths, order) < 0.8
    best_f = f_value(obj, order)
    balanced, swaps = balance_length(obj, order, lengths, 1.25, groups)
    assert swaps == 1
    assert 0.8 <= length_ratio(lengths, balanced) <= 1.25
    assert sorted(groups[balanced]) == [0, 1, 2, 3]  # every group stays covered
    lo, hi = lengths.mean() * 4 / 1.25, lengths.mean() * 4 * 1.25
    candidates = []
    for pos, j in itertools.product(range(4), range(24)):
        if j in order or groups[j] != groups[order[pos]]:
            continue
        swapped = order.copy()
        swapped[pos] = j
        if lo <= lengths[swapped].sum() <= hi:
            candidates.append(f_value(obj, swapped))
    assert f_value(obj, balanced) == pytest.approx(max(candidates))
    assert f_value(obj, balanced) < best_f  # it did cost something: the band is a constraint


def test_a_selection_in_the_band_or_out_of_reach_is_left_alone():
    X = sp.csr_matrix(np.eye(4))
    obj = Objective([Block(X, np.ones(4), "facility")])
    order = np.array([0, 1])
    same, swaps = balance_length(obj, order, np.array([10.0, 12, 11, 9]), 1.25, np.zeros(4, int))
    assert swaps == 0 and list(same) == [0, 1]
    # 4 picks of 1 char, 4 other rows of 3: the band starts at 4 * 2 / 1.25 = 6.4 characters
    # in all, one swap reaches 6
    obj = Objective([Block(sp.csr_matrix(np.eye(8)), np.ones(8), "facility")])
    order = np.arange(4)
    same, swaps = balance_length(obj, order, np.array([1.0] * 4 + [3.0] * 4), 1.25,
                                 np.zeros(8, int), max_swaps=1)
    assert swaps == 0 and list(same) == [0, 1, 2, 3]
    same, swaps = balance_length(obj, order, np.array([1.0] * 4 + [3.0] * 4), 1.25,
                                 np.zeros(8, int), max_swaps=2)
    assert swaps == 2


def test_tags_keeps_the_mean_length_in_the_band_and_the_top_level_covered():
    """A pool whose best-covering instances are all short: unbalanced TAGS lands far below the
    pool's mean length; with the band it lands inside, with the same top-level nodes, the
    reported gains adding up to the objective."""
    tree = balanced_tree(3, 5)
    n = 300
    grounding = random_pool(n, 15, seed=1)
    scorer = TreeScorer().fit(tree, grounding)
    rng = np.random.default_rng(1)
    quality = rng.uniform(0.2, 1.0, n)
    lengths = np.where(quality > 0.6, rng.uniform(40, 80, n), rng.uniform(400, 800, n))
    problem = SelectionProblem(tree, scorer.weights_, quality, scorer.ic_, lengths=lengths)
    plain = TagsSampler(align="none", length_band=0).fit(problem, 6)
    assert length_ratio(lengths, plain.selected_) < 0.8
    banded = TagsSampler(align="none").fit(problem, 6)
    assert banded.length_swaps_ > 0
    assert 0.8 <= length_ratio(lengths, banded.selected_) <= 1.25
    top = tree.nodes_at(tree.depth - 1)
    def tops(rows):
        return set(problem.paths[rows][:, top].tocsr().indices)
    assert tops(banded.selected_) == tops(plain.selected_)
    assert banded.gains_.sum() == pytest.approx(banded.objective_)
    assert banded.objective_ < plain.objective_


def test_a_drift_too_wide_for_swaps_is_steered_by_the_length_bonus():
    """Quality that grows with length, 150 picks of 1,500: the unbalanced selection is 2.6x the
    pool's length, and swapping every pick once inside its top-level node still leaves 1.6x;
    the searched length bonus brings it into the band."""
    tree = balanced_tree(3, 5)
    n = 1500
    scorer = TreeScorer().fit(tree, random_pool(n, 15, seed=2))
    rng = np.random.default_rng(2)
    quality = rng.uniform(0.05, 1.0, n)
    lengths = np.exp(4 + 3 * quality + rng.normal(0, 0.1, n))
    problem = SelectionProblem(tree, scorer.weights_, quality, scorer.ic_, lengths=lengths)
    plain = TagsSampler(align="none", length_band=0, quality_weight=2.0).fit(problem, 150)
    assert length_ratio(lengths, plain.selected_) > 1.25
    banded = TagsSampler(align="none", quality_weight=2.0).fit(problem, 150)
    assert banded.length_weight_ > 0
    assert 0.8 <= length_ratio(lengths, banded.selected_) <= 1.25
    assert len(set(banded.selected_)) == 150
    assert banded.gains_.sum() == pytest.approx(banded.objective_)


def test_lengths_must_match_the_pool():
    tree = balanced_tree(3, 5)
    scorer = TreeScorer().fit(tree, random_pool(20, 15, seed=0))
    with pytest.raises(ValueError, match="19 values for 20 instances"):
        SelectionProblem(tree, scorer.weights_, scorer.quality_, scorer.ic_,
                         lengths=np.ones(19))
    ok = SelectionProblem(tree, scorer.weights_, scorer.quality_, scorer.ic_,
                          lengths=[3] * 20)  # a list is taken as an array
    assert ok.lengths.dtype == np.float64
