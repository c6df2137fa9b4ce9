"""A planted topic > subtopic > concept set of real phrases through the real MiniLM embedder: the
tree must recover the topics and the TAGS selection must cover every subtopic.

Nothing here is built to cluster: the concept phrases and instance texts are ordinary English
(benchmarks/data/planted_hierarchy.json, written for this project), embedded by the shipped
int8 all-MiniLM-L6-v2. Each instance asks about concepts of one subtopic, and its tags are
those concepts (what an LLM tagger returns for it)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tagtree.align import alignment_level, level_kl
from tagtree.grounding import leaf_weight_matrix
from tagtree.label_metrics import assignment, nmi
from tagtree.sampling import SelectionProblem, TagsSampler
from tagtree.scoring import TreeScorer
from tagtree.tree import TreeBuilder, tag_context_vectors

ROOT = Path(__file__).resolve().parents[2]
TOPICS = ("law", "music", "astronomy", "cooking", "finance")


def _planted_rows():
    spec = importlib.util.spec_from_file_location("quality_data",
                                                  ROOT / "benchmarks" / "quality_data.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("quality_data", mod)  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    full = json.loads((ROOT / "benchmarks" / "data" / "planted_hierarchy.json").read_text())
    return mod.planted_rows(per_subtopic=6, hierarchy={t: full[t] for t in TOPICS})


@pytest.fixture(scope="module")
def planted():
    from tagtree.config import Config
    from tagtree.io.embedder import make_embedder

    rows = _planted_rows()
    tags = sorted({t for r in rows for t in r["tags"]})
    col = {t: j for j, t in enumerate(tags)}
    r_idx = [i for i, r in enumerate(rows) for _ in r["tags"]]
    c_idx = [col[t] for r in rows for t in r["tags"]]
    incidence = sp.csr_matrix((np.ones(len(r_idx)), (r_idx, c_idx)), shape=(len(rows), len(tags)))
    embedder = make_embedder(Config())
    tag_vecs = embedder.embed(tags)
    inst_vecs = embedder.embed([r["prompt"] for r in rows])
    freqs = np.asarray(incidence.sum(axis=0)).ravel().astype(np.int64)
    t = Config().tree  # the shipped tree defaults, with the instances' structure
    builder = TreeBuilder(context_weight=t.context_weight,
                          upper_context_weight=t.upper_context_weight, k_search=t.k_search,
                          structure_weight=t.structure_weight,
                          structure_neighbours=t.structure_neighbours,
                          consensus_runs=t.consensus_runs, root_max=10).fit(tags, tag_vecs, freqs,
                                          context=tag_context_vectors(incidence, inst_vecs),
                                          structure=(incidence, inst_vecs))
    tree = builder.tree_
    rr, cc = incidence.nonzero()
    leaves = leaf_weight_matrix(rr, builder.tag_leaf_[cc], len(rows), tree.n_leaves)
    return rows, tree, leaves, inst_vecs


def _problem(planted, target=None):
    _, tree, leaves, inst_vecs = planted
    scorer = TreeScorer().fit(tree, leaves)
    return SelectionProblem(tree, scorer.weights_, scorer.quality_, scorer.ic_,
                            embeddings=inst_vecs, target_mass=target)


def _sampler(align: str) -> TagsSampler:
    """TAGS with the shipped sample defaults (centrality, kernels, quality weight)."""
    from tagtree.config import Config
    from tagtree.stages.sample import selector_params

    return TagsSampler(**(selector_params(Config(), "tags", 0) | {"align": align}))


def test_the_tree_recovers_the_topics_and_subtopics(planted):
    rows, tree, _, _ = planted
    p = _problem(planted)
    top = assignment(tree, p.weights, tree.depth - 1)
    leaf = assignment(tree, p.weights, 0)
    assert nmi(top, [r["topic"] for r in rows]) >= 0.9
    assert nmi(leaf, [r["subtopic"] for r in rows]) >= 0.9


def test_a_budget_of_one_per_subtopic_covers_every_subtopic(planted):
    rows, tree, _, _ = planted
    p = _problem(planted)
    subtopics = np.array([r["subtopic"] for r in rows])
    k = len(set(subtopics))
    # Exactly one pick per subtopic reaches every one, though the tree split three subtopics
    # over two leaves each (25 leaves): the same instances carry both halves' tags, so the
    # co-occurrence kernel counts them once (17 of 20 without it).
    picked = _sampler("none").fit(p, k).selected_
    assert len(set(subtopics[picked])) == k
    # and a budget of one per topic spreads over the topics first
    topics = np.array([r["topic"] for r in rows])
    picked = _sampler("none").fit(p, len(TOPICS)).selected_
    assert len(set(topics[picked])) == len(TOPICS)


@pytest.mark.parametrize("align", ["quota", "penalty"])
def test_alignment_never_ends_farther_from_the_target_than_the_pool(planted, align):
    rows, tree, leaves, _ = planted
    topics = np.array([r["topic"] for r in rows])
    target_rows = np.flatnonzero(topics == "music")[:10]  # a target sample of one topic
    target_mass = np.asarray(leaves[target_rows].sum(axis=0)).ravel()
    p = _problem(planted, target=target_mass)
    for k in (3, 5, 10, 20):
        picked = _sampler(align).fit(p, k).selected_
        level = alignment_level(tree, target_mass, k)
        kl_sel = level_kl(tree, target_mass, p.leaf_dist, picked, level, 0.01)
        kl_pool = level_kl(tree, target_mass, p.leaf_dist, None, level, 0.01)
        assert kl_sel <= kl_pool, (k, kl_sel, kl_pool)
        assert (topics[picked] == "music").mean() >= 0.6
