"""Tag normalization: folding, exact de-duplication with frequencies, rare-tag filter, and
near-duplicate merging that never chains."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tagtree import normalize as nz


def test_folding_examples():
    assert nz.normalize_tag("  Python_List-Comprehension ") == "python list comprehension"
    assert nz.normalize_tag("C++") == "c++"
    assert nz.normalize_tag("Node.js.") == "node.js"
    assert nz.normalize_tag("\uff33\uff31\uff2c  joins") == "sql joins"  # full-width letters
    assert nz.normalize_tag('"Machine   Learning"') == "machine learning"
    assert nz.normalize_tag("STRASSE") == nz.normalize_tag("straße")
    assert nz.normalize_tag("--") == "" and nz.normalize_tag("") == ""
    assert nz.normalize_tag("1.1.1.1") == "" and nz.normalize_tag("c3po") == "c3po"
    assert len(nz.normalize_tag("x" * 500)) == nz.MAX_TAG_CHARS


@given(st.text(max_size=60))
def test_folding_is_idempotent(raw):
    once = nz.normalize_tag(raw)
    assert nz.normalize_tag(once) == once


def test_fold_counts_and_rare_filter():
    freq, alias = nz.fold_counts([("SQL Joins", 3), ("sql joins", 2), ("sql-joins", 1),
                                  ("Rust", 1), ("!!", 5)])
    assert freq == {"sql joins": 6, "rust": 1}
    assert alias == {"SQL Joins": "sql joins", "sql joins": "sql joins",
                     "sql-joins": "sql joins", "Rust": "rust"}
    kept, kept_alias = nz.filter_rare(freq, alias, 2)
    assert kept == {"sql joins": 6} and "Rust" not in kept_alias
    assert nz.order_by_frequency({"b": 2, "a": 2, "c": 5}) == ["c", "a", "b"]


def test_near_duplicates_merge_into_more_frequent_tags_without_chaining():
    # a ~ b (0.95), b ~ c (0.95), a !~ c (0.81): c must not merge into b, which is not canonical
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.95, np.sqrt(1 - 0.95**2), 0.0])
    c_angle = 2 * np.arccos(0.95)
    c = np.array([np.cos(c_angle), np.sin(c_angle), 0.0])
    far = np.array([0.0, 0.0, 1.0])
    vectors = np.array([a, b, c, far], np.float32)
    target = nz.near_duplicate_map(["a", "b", "c", "far"], np.array([9, 5, 3, 1]), vectors, 0.92)
    assert target.tolist() == [0, 0, 2, 3]


def test_merge_near_duplicates_moves_frequencies_and_aliases():
    freq = {"python list": 5, "python lists": 2, "baking": 1}
    alias = {"Python list": "python list", "python lists": "python lists", "Baking": "baking"}
    ordered = nz.order_by_frequency(freq)
    vectors = np.array([[1, 0], [0.99, 0.141], [0, 1]], np.float32)
    new_freq, new_alias, kept = nz.merge_near_duplicates(freq, alias, ordered, vectors, 0.95)
    assert new_freq == {"python list": 7, "baking": 1}
    assert new_alias["python lists"] == "python list" and kept.tolist() == [0, 2]
    same, _, _ = nz.merge_near_duplicates(freq, alias, ordered, vectors, 1.0)
    assert same == freq  # threshold 1 disables merging
