"""Small constructed knowledge trees and grounded pools with known answers (sampling tests)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tagtree.hierarchy import KnowledgeTree


def balanced_tree(branches: int = 3, leaves_per_branch: int = 4) -> KnowledgeTree:
    """Leaves 0..L-1, then one level-1 node per branch, then a single root."""
    n_leaves = branches * leaves_per_branch
    parent = [n_leaves + i // leaves_per_branch for i in range(n_leaves)]
    root = n_leaves + branches
    parent += [root] * branches + [-1]
    level = [0] * n_leaves + [1] * branches + [2]
    names = ([f"leaf{i}" for i in range(n_leaves)] + [f"branch{b}" for b in range(branches)]
             + ["root"])
    return KnowledgeTree(parent=np.array(parent), level=np.array(level), name=names, version="t1")


def one_leaf_pool(counts: list[int], n_leaves: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """counts[i] instances grounded on leaf i only; returns (grounding, leaf of each row)."""
    leaf_of = np.repeat(np.arange(len(counts)), counts)
    g = sp.csr_matrix((np.ones(len(leaf_of)), (np.arange(len(leaf_of)), leaf_of)),
                      shape=(len(leaf_of), n_leaves))
    return g, leaf_of


def random_pool(n: int, n_leaves: int, seed: int = 0, max_leaves: int = 3) -> sp.csr_matrix:
    """Instances on 1..max_leaves random leaves with random positive weights."""
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    for i in range(n):
        leaves = rng.choice(n_leaves, size=rng.integers(1, max_leaves + 1), replace=False)
        rows += [i] * len(leaves)
        cols += leaves.tolist()
        vals += rng.uniform(0.2, 1.0, size=len(leaves)).tolist()
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n_leaves))
