"""Tree building on a planted topic -> subtopic -> concept -> tag hierarchy: the tree must find it.

``planted_tags`` is also imported by the tree integration tests and the benchmark.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score

from tagtree.tree import TreeBuilder, two_stage_kmeans


def planted_tags(n_topics=6, n_sub=4, n_concepts=4, n_tags=8, dim=384, seed=0,
                 spread=(1.0, 0.55, 0.35, 0.2)):
    """Tag names, unit vectors and planted topic / subtopic / concept labels of every tag."""
    rng = np.random.default_rng(seed)

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    names, vecs, topic, sub, concept = [], [], [], [], []
    for t in range(n_topics):
        tc = unit(rng.normal(size=dim)) * spread[0]
        for s in range(n_sub):
            sc = tc + unit(rng.normal(size=dim)) * spread[1]
            for c in range(n_concepts):
                cc = sc + unit(rng.normal(size=dim)) * spread[2]
                for i in range(n_tags):
                    vecs.append(cc + unit(rng.normal(size=dim)) * spread[3])
                    names.append(f"topic{t} sub{s} concept{c} tag{i}")
                    topic.append(t)
                    sub.append(t * n_sub + s)
                    concept.append((t * n_sub + s) * n_concepts + c)
    x = unit(np.array(vecs)).astype(np.float32)
    return names, x, np.array(topic), np.array(sub), np.array(concept)


def purity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Share of items whose cluster's majority truth label is their own."""
    total = 0
    for c in np.unique(pred):
        total += np.bincount(truth[pred == c]).max()
    return total / len(pred)


def top_level_of_tags(builder: TreeBuilder) -> np.ndarray:
    tree = builder.tree_
    return np.array([tree.path(int(leaf))[-1] for leaf in builder.tag_leaf_])


def build(seed=0, **kw):
    names, x, topic, sub, concept = planted_tags()
    params = dict(leaf_size=8, branching=4, root_max=6, random_state=seed) | kw
    return TreeBuilder(**params).fit(names, x), topic, sub, concept


def test_planted_hierarchy_is_recovered():
    b, topic, sub, concept = build()
    tree = b.tree_
    assert purity(b.tag_leaf_, concept) >= 0.9
    assert adjusted_rand_score(topic, top_level_of_tags(b)) >= 0.7
    assert tree.depth >= 3 and len(tree.nodes_at(tree.depth - 1)) <= 6
    # sizes count canonical tags: every level sums to all tags
    for lvl in range(tree.depth):
        assert tree.size[tree.nodes_at(lvl)].sum() == len(b.tag_leaf_)


def test_same_seed_same_tree_and_seed_matters():
    a, *_ = build(seed=3)
    b, *_ = build(seed=3)
    np.testing.assert_array_equal(a.tree_.parent, b.tree_.parent)
    np.testing.assert_array_equal(a.tag_leaf_, b.tag_leaf_)
    assert a.tree_.name == b.tree_.name
    c, *_ = build(seed=4)
    assert not np.array_equal(a.tag_leaf_, c.tag_leaf_)


def test_two_stage_kmeans_matches_direct_quality():
    names, x, topic, sub, concept = planted_tags(n_topics=8, n_sub=4, n_concepts=8, n_tags=6)
    k = len(np.unique(concept))  # 256 concepts
    two = two_stage_kmeans(x, k, direct_max=16, seed=0)
    assert purity(two, concept) >= 0.9
    assert 0.8 * k <= two.max() + 1 <= k * 1.1


def test_names_come_from_member_tags():
    b, *_ = build()
    tree = b.tree_
    leaf0_members = {n for n, leaf in zip(planted_tags()[0], b.tag_leaf_, strict=True) if leaf == 0}
    assert tree.name[0] in leaf0_members
    top = tree.nodes_at(tree.depth - 1)
    assert all(tree.name[i] and tree.description[i].startswith("e.g.") for i in top)


def test_max_depth_caps_levels_and_root_fanout():
    b, *_ = build(max_depth=1, root_max=5)
    assert b.tree_.depth == 2 and len(b.tree_.nodes_at(1)) <= 5


def test_tiny_inputs():
    names, x, *_ = planted_tags(n_topics=1, n_sub=1, n_concepts=1, n_tags=3)
    b = TreeBuilder(leaf_size=6).fit(names, x)
    assert b.tree_.n_nodes == 1 and b.tree_.parent[0] == -1
    b = TreeBuilder(leaf_size=1, root_max=2, branching=2).fit(names, x)
    assert b.tree_.n_leaves == 3 and b.tree_.depth >= 2
