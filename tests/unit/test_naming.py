"""Offline node names: the shipped vocabulary read as an outline, headings matched to real tag
phrases through the real MiniLM embedder, one heading per level, fallbacks and sibling
uniqueness."""

from __future__ import annotations

import numpy as np
import pytest

from tagtree.config import Config
from tagtree.errors import TagtreeError
from tagtree.io.vocabulary import load_vocabulary, vocabulary_fingerprint, vocabulary_text
from tagtree.naming import make_vocabulary, parse_vocabulary, sibling_unique, vocabulary_names


@pytest.fixture(scope="module")
def embedder():
    from tagtree.io.embedder import make_embedder

    return make_embedder(Config())


@pytest.fixture(scope="module")
def builtin(embedder):
    return load_vocabulary("builtin", embedder)


def test_outline_tiers_comments_and_repeats():
    pairs = parse_vocabulary(["# a comment", "Mathematics", "  Algebra", "    Groups", "",
                              "mathematics", "Law"])
    assert pairs == [("Mathematics", 0), ("Algebra", 1), ("Groups", 2), ("Law", 0)]


def test_the_shipped_vocabulary_is_broad_and_fingerprinted(builtin):
    assert len(builtin) >= 250 and set(builtin.tiers.tolist()) == {0, 1}
    assert {"Mathematics", "Programming", "Medicine", "Law", "Email writing"} <= set(
        builtin.headings)
    assert vocabulary_fingerprint("builtin") != vocabulary_fingerprint("none")
    assert vocabulary_text("none") is None


def test_a_missing_vocabulary_file_is_a_clear_error(tmp_path, embedder):
    with pytest.raises(TagtreeError, match="no such file .*nope.txt"):
        load_vocabulary(str(tmp_path / "nope.txt"), embedder)
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n")
    with pytest.raises(TagtreeError, match="no headings"):
        load_vocabulary(str(empty), embedder)


def node_vectors(embedder, groups):
    out = []
    for g in groups:
        v = np.asarray(embedder.embed(g)).mean(axis=0)
        out.append(v / np.linalg.norm(v))
    return np.array(out)


def test_nodes_of_real_tags_get_the_heading_of_their_subject(embedder, builtin):
    groups = [["derivative of a function", "definite integral", "limits and continuity"],
              ["python list comprehension", "javascript promises", "debugging a segfault"],
              ["chocolate cake recipe", "baking bread", "marinating chicken"],
              ["cover letter for a job", "resume tips", "job interview questions"],
              ["mitochondria", "cell membrane transport", "dna replication"]]
    names = vocabulary_names(node_vectors(embedder, groups), builtin, tier_penalty=0.1)
    assert names[0] in {"Calculus", "Mathematics"}
    assert names[1] in {"Programming", "Computer science", "Debugging", "Python programming"}
    assert names[2] in {"Food and cooking", "Recipes", "Baking"}
    assert names[3] in {"Careers and work", "Job applications", "Resumes and cover letters"}
    assert names[4] in {"Biology", "Cell biology", "Molecular biology"}
    assert len(set(names)) == len(names)


def test_each_heading_names_one_node_of_a_level_and_poor_matches_fall_back(embedder):
    pairs = [("Mathematics", 0), ("Music", 0)]
    vocab = make_vocabulary(pairs, embedder.embed([h for h, _ in pairs]))
    groups = [["solving quadratic equations"], ["adding fractions"], ["guitar chords"]]
    names = vocabulary_names(node_vectors(embedder, groups), vocab, min_score=0.2)
    assert names.count("Mathematics") == 1 and names[2] == "Music"
    assert None in names[:2]  # the second maths node keeps its member-tag name
    assert vocabulary_names(node_vectors(embedder, groups), vocab, min_score=1.5) == [None] * 3


def test_siblings_never_share_a_name():
    names = ["Mathematics", "Mathematics", "Music", "Mathematics", "Mathematics"]
    parent = np.array([9, 9, 9, 8, 9])
    alts = [["algebra"], ["algebra", "geometry"], [], ["algebra"], []]
    out = sibling_unique(names, parent, alts)
    assert out == ["Mathematics", "Mathematics (algebra)", "Music", "Mathematics",
                   "Mathematics (2)"]


def test_a_built_tree_has_no_repeated_sibling_names(embedder):
    from tagtree.tree import TreeBuilder
    from tests.unit.test_tree_planted import planted_tags

    names, x, *_ = planted_tags(n_topics=4, n_sub=3, n_concepts=2, n_tags=4)
    # One heading that matches nothing well: every node falls back to member tags, whose
    # two-part names repeat across siblings in planted data ("topic0 sub1 ...").
    pairs = [("Mathematics", 0)]
    vocab = make_vocabulary(pairs, embedder.embed(["Mathematics"]))
    tree = TreeBuilder(leaf_size=4, branching=3, root_max=4, vocabulary=vocab,
                       vocabulary_min_score=-1.0).fit(names, x).tree_
    for p in set(tree.parent.tolist()):
        kids = [tree.name[i].casefold() for i in np.flatnonzero(tree.parent == p)]
        assert len(kids) == len(set(kids)), kids
    assert sum(n == "Mathematics" for n in tree.name) <= tree.depth - 1  # once per level
