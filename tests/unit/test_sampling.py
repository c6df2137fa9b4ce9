"""TAGS sampling on constructed trees with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tagtree.align import leaf_mass, selection_kl
from tagtree.baselines import RandomSampler
from tagtree.sampling import SelectionProblem, TagsSampler
from tagtree.scoring import TreeScorer
from tests.support.sample_trees import balanced_tree, one_leaf_pool, random_pool


def problem_for(tree, grounding, quality=None, target=None):
    scorer = TreeScorer().fit(tree, grounding)
    q = scorer.quality_ if quality is None else np.asarray(quality, dtype=float)
    return SelectionProblem(tree, scorer.weights_, q, scorer.ic_, target_mass=target)


def random_problems(n: int, seeds=range(3)):
    """Problems on a 15-leaf tree with random groundings, qualities and skewed targets."""
    tree = balanced_tree(3, 5)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        q = rng.uniform(0.2, 1.0, n)
        target = np.random.default_rng(seed).uniform(0, 1, 15) ** 4
        yield problem_for(tree, random_pool(n, 15, seed=seed), quality=q, target=target)


def test_gains_do_not_grow_with_the_number_of_tags():
    """Two instances on the same top-level branch, one with 1 leaf, one spread over 3 leaves of
    it: the coverage term gives the spread one no more (its path holds a third of its mass),
    so the concentrated, typical instance is picked first."""
    import scipy.sparse as sp

    tree = balanced_tree(2, 3)
    g = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0, 0, 0]]))
    p = problem_for(tree, g, quality=np.ones(2))
    s = TagsSampler(align="none").fit(p, 1)
    assert s.selected_.tolist() == [0]


def test_covers_every_leaf_before_repeating_one_even_with_a_duplicate_heavy_branch():
    tree = balanced_tree(3, 4)
    balanced = [3] * 12
    heavy = [3] * 4 + [30] * 4 + [3] * 4  # branch 1: ten times the copies
    for counts in (balanced, heavy):
        g, leaf_of = one_leaf_pool(counts, 12)
        p = problem_for(tree, g, quality=np.ones(g.shape[0]))
        s = TagsSampler().fit(p, 24)
        first, second = leaf_of[s.selected_[:12]], leaf_of[s.selected_[12:]]
        assert sorted(first) == list(range(12)), counts
        if counts == balanced:
            assert sorted(second) == list(range(12))  # then each leaf once more
        else:  # copies lower a leaf's IC: the heavy branch gets no more than its share
            assert np.isin(second, [4, 5, 6, 7]).sum() <= 4


def test_quality_weighting_prefers_the_better_of_two_instances_on_one_leaf():
    tree = balanced_tree(2, 2)
    g, _ = one_leaf_pool([2, 1, 1, 1], 4)
    for good, bad in ((0, 1), (1, 0)):
        q = np.full(5, 0.6)
        q[good], q[bad] = 0.9, 0.4
        s = TagsSampler().fit(problem_for(tree, g, quality=q), 4)
        assert good in s.selected_ and bad not in s.selected_


def test_aligned_selection_is_closer_to_a_target_concentrated_on_one_branch():
    tree = balanced_tree(3, 4)
    g = random_pool(150, 12, seed=1, max_leaves=2)
    target = np.zeros(12)
    target[:4] = [5, 3, 1, 1]  # the target lives in branch 0
    p = problem_for(tree, g, target=target)
    k, eps = 15, 0.01
    pi = p.target_pi(eps)
    kl = {}
    for name, params in {"plain": {"align": "none"}, "penalty": {"align": "penalty"},
                         "quota": {"align": "quota"}}.items():
        kl[name] = selection_kl(pi, p.leaf_dist, TagsSampler(**params).fit(p, k).selected_, eps)
    rand = np.mean([selection_kl(pi, p.leaf_dist, RandomSampler(seed).fit(p, k).selected_, eps)
                    for seed in range(20)])
    assert kl["penalty"] < kl["plain"] and kl["penalty"] < rand
    assert kl["quota"] < kl["plain"] and kl["quota"] < rand
    # and most of the aligned selection's mass sits in the target's branch
    sel = leaf_mass(p.leaf_dist, TagsSampler().fit(p, k).selected_)
    assert sel[:4].sum() / sel.sum() > 0.7


@pytest.mark.parametrize("align", ["none", "penalty"])
def test_lazy_greedy_equals_plain_greedy(align):
    for p in random_problems(80):
        plain = TagsSampler(align=align, strategy="plain").fit(p, 30)
        # small windows and batches exercise the frontier pulls and merges
        for batch, window in ((4, 2), (1, 1), (256, 4096)):
            lazy = TagsSampler(align=align, batch=batch, window=window).fit(p, 30)
            assert lazy.selected_.tolist() == plain.selected_.tolist()
            np.testing.assert_allclose(lazy.gains_, plain.gains_)
        assert np.all(np.diff(plain.gains_) <= 1e-9)  # submodular: gains never grow


def test_stochastic_greedy_is_close_to_lazy_greedy():
    tree = balanced_tree(3, 5)
    p = problem_for(tree, random_pool(300, 15, seed=3))
    lazy = TagsSampler(align="none").fit(p, 30)
    stoch = TagsSampler(align="none", strategy="stochastic", random_state=1).fit(p, 30)
    assert len(set(stoch.selected_.tolist())) == 30
    assert stoch.objective_ >= 0.9 * lazy.objective_


@pytest.mark.parametrize("k", [0, 1, 40, 41, 1000])
def test_budgets_zero_one_all_and_more_than_the_pool(k):
    tree = balanced_tree(2, 3)
    p = problem_for(tree, random_pool(41, 6, seed=2), target=np.ones(6))
    for params in ({}, {"align": "quota"}, {"align": "quota", "window": 1},
                   {"strategy": "stochastic"}):
        s = TagsSampler(**params).fit(p, k)
        assert len(s.selected_) == min(k, 41)
        assert len(set(s.selected_.tolist())) == len(s.selected_)
        if k >= 41:
            assert sorted(s.selected_.tolist()) == list(range(41))


def test_ungrounded_instances_come_last():
    tree = balanced_tree(2, 2)
    g, _ = one_leaf_pool([1, 1, 1, 1], 4)
    g = g.tolil()
    g.resize(6, 4)  # two instances grounded nowhere
    p = problem_for(tree, g.tocsr())
    s = TagsSampler().fit(p, 6)
    assert set(s.selected_[:4].tolist()) == {0, 1, 2, 3}
    assert s.gains_[4:].max() < s.gains_[:4].min()  # only their quality bonus is left
    assert TagsSampler(quality_weight=0).fit(p, 6).gains_[-1] == 0


def test_lazy_greedy_breaks_ties_like_plain_greedy():
    tree = balanced_tree(3, 4)
    g, _ = one_leaf_pool([3, 1, 2, 3] * 3, 12)  # many exactly equal gains
    p = problem_for(tree, g, quality=np.ones(g.shape[0]))
    plain = TagsSampler(strategy="plain").fit(p, 20).selected_.tolist()
    for batch, window in ((1, 1), (3, 2), (256, 4096)):
        assert TagsSampler(batch=batch, window=window).fit(p, 20).selected_.tolist() == plain


def _unit(rows):
    x = np.asarray(rows, dtype=float)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_centrality_prefers_the_most_representative_member_of_a_node():
    """Three instances on one leaf, the middle one (row 2) between the other two: with
    centrality the first pick is it, as a k-means medoid would be; without, the tie goes to
    row 0."""
    tree = balanced_tree(1, 1)
    g, _ = one_leaf_pool([3], 1)
    emb = _unit([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.2]])
    p = problem_for(tree, g, quality=np.ones(3))
    p.embeddings = emb
    assert TagsSampler(align="none", centrality=0).fit(p, 1).selected_.tolist() == [0]
    assert TagsSampler(align="none", centrality=0.3).fit(p, 1).selected_.tolist() == [2]


def test_kernel_covers_a_topic_split_over_two_leaves_once():
    """Leaves 0 and 1 hold the same topic (their instances read alike): once leaf 0 is covered,
    the node kernel counts leaf 1 as nearly covered (or the other way round), so the next pick
    goes to another topic; without the kernel the third pick covers the other half."""
    tree = balanced_tree(2, 3)
    g, leaf_of = one_leaf_pool([1] * 6, 6)
    emb = _unit([[1, 0, 0, 0, 0], [1, 0.05, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0],
                 [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]])
    p = problem_for(tree, g, quality=np.ones(6))
    p.embeddings = emb
    for c in (0.0, 0.3):
        plain = TagsSampler(align="none", centrality=c, kernel_tau=1.0).fit(p, 3).selected_
        kernel = TagsSampler(align="none", centrality=c, kernel_tau=0.7).fit(p, 3).selected_
        assert {0, 1} <= set(leaf_of[plain].tolist()), c  # both halves of the split topic
        assert len({0, 1} & set(leaf_of[kernel].tolist())) == 1, c  # one half, then elsewhere


def test_a_budget_smaller_than_the_top_level_goes_to_the_top_nodes_holding_more_of_the_pool():
    """Three top nodes of two leaves each: A and B hold ten instances each, C two, and C's
    instances have the best quality. With top_mass_power 0 every top node counts the same and
    quality sends one of two picks to C; with 0.5 the two picks cover A and B (C's weight is
    sqrt(2 / 7.3) of an average node's); with a third pick every node is covered again."""
    from tagtree.hierarchy import KnowledgeTree

    parent = np.array([6, 6, 7, 7, 8, 8, -1, -1, -1])
    tree = KnowledgeTree(parent=parent, level=np.array([0] * 6 + [1] * 3),
                         name=[f"n{i}" for i in range(9)], version="t-mass")
    g, leaf_of = one_leaf_pool([5, 5, 5, 5, 1, 1], 6)
    top_of = leaf_of // 2
    q = np.where(top_of == 2, 1.0, 0.5)
    p = problem_for(tree, g, quality=q)
    even = TagsSampler(align="none", top_mass_power=0).fit(p, 2).selected_
    by_mass = TagsSampler(align="none", top_mass_power=0.5).fit(p, 2).selected_
    assert 2 in top_of[even].tolist()
    assert sorted(top_of[by_mass].tolist()) == [0, 1]
    three = TagsSampler(align="none", top_mass_power=0.5).fit(p, 3).selected_
    assert sorted(top_of[three].tolist()) == [0, 1, 2]


def test_node_kernel_stays_within_a_level_and_is_one_on_the_diagonal():
    from tagtree.sampling import node_kernel

    tree = balanced_tree(2, 2)  # leaves 0-3, branches 4-5, root 6
    means = _unit([[1, 0, 0], [1, 0.1, 0], [0, 1, 0], [0, 0, 1], [1, 0.05, 0], [0, 1, 1],
                   [1, 1, 1]])
    k = node_kernel(tree, means, tau=0.7).toarray()
    assert np.allclose(np.diag(k), 1.0)
    assert k[0, 1] > 0.9 and k[0, 2] == 0 and k[0, 4] == 0  # leaves with leaves only
    assert (k >= 0).all() and (k <= 1).all()


@pytest.mark.parametrize("align", ["none", "penalty", "quota"])
def test_compiled_lazy_greedy_picks_what_the_numpy_driver_picks(align):
    """tagtree.greedy_jit (Numba, used from JIT_MIN_ROWS rows) against the numpy driver and,
    without quotas, against plain greedy; ties included (many equal gains)."""
    from tagtree import greedy_jit
    from tagtree.greedy import lazy_greedy, plain_greedy

    assert greedy_jit.AVAILABLE, "numba is a dependency: the compiled greedy must load"
    for p in random_problems(120):
        sampler = TagsSampler(align=align)
        groups = quotas = None
        if align == "quota":
            obj, pi = sampler.objective(p, 40)
            groups, quotas = sampler._quotas(p, pi, 40)
        runs = {}
        for jit in (False, True):
            obj, _ = sampler.objective(p, 40)
            order, gains = lazy_greedy(obj, p.n, 40, groups=groups, quotas=quotas, jit=jit)
            runs[jit] = (order.tolist(), gains, obj.value())
        assert runs[True][0] == runs[False][0]
        np.testing.assert_allclose(runs[True][1], runs[False][1])
        assert runs[True][2] == pytest.approx(runs[False][2])  # the blocks' totals updated
        if groups is None:
            obj, _ = sampler.objective(p, 40)
            assert plain_greedy(obj, p.n, 40)[0].tolist() == runs[True][0]
    tie_tree = balanced_tree(3, 4)
    g, _ = one_leaf_pool([3, 1, 2, 3] * 3, 12)
    p = problem_for(tie_tree, g, quality=np.ones(g.shape[0]))
    plain = TagsSampler(strategy="plain").fit(p, 20).selected_.tolist()
    obj, _ = TagsSampler().objective(p, 20)
    assert lazy_greedy(obj, p.n, 20, jit=True)[0].tolist() == plain


def test_cooccurrence_kernel_links_leaves_the_same_instances_carry_when_they_mean_alike():
    """Rows 0-2 carry tags of leaves 0 and 1 (one subtopic split by the strings); row 3 ties
    leaf 0 to leaf 3, whose instances mean something else (orthogonal means); row 4 is on leaf
    2 alone. Only the pair (0, 1) is linked, both ways, never a leaf with itself."""
    import scipy.sparse as sp

    from tagtree.sampling import cooccurrence_kernel

    shares = sp.csr_matrix(np.array([[0.5, 0.5, 0, 0], [0.6, 0.4, 0, 0], [0.5, 0.5, 0, 0],
                                     [0.5, 0, 0, 0.5], [0, 0, 1.0, 0]]))
    means = _unit([[1, 0, 0], [1, 0.2, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])  # 4 leaves + root
    k = cooccurrence_kernel(shares, means, tau=0.3, min_cos=0.4).toarray()
    assert k.shape == (5, 5)
    assert k[0, 1] > 0.5 and k[0, 1] == k[1, 0]
    assert k[0, 3] == 0 and k[3, 0] == 0  # co-occur, but unlike in meaning
    assert np.count_nonzero(k) == 2 and np.allclose(np.diag(k), 0)
    # without the meaning gate the (0, 3) pair is linked too
    assert cooccurrence_kernel(shares, means, tau=0.3, min_cos=-1.0)[0, 3] > 0
