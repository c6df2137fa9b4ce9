"""The knowledge tree as arrays: the contract between tree building, grounding, scoring,
sampling and the report.

Node ids are ``0..n_nodes-1``; leaves come first, so a leaf's node id is also its leaf index.
Every node at level ``l`` has its parent at level ``l+1`` (level-wise construction gives a tree
of uniform depth); top-level nodes have parent ``-1``. Level 0 is the leaves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass
class KnowledgeTree:
    parent: np.ndarray  # int64 [n_nodes], -1 for top-level nodes
    level: np.ndarray  # int64 [n_nodes], 0 = leaf
    name: list[str]
    description: list[str] = field(default_factory=list)
    size: np.ndarray | None = None  # canonical tags under each node
    version: str = ""

    def __post_init__(self):
        self.parent = np.asarray(self.parent, dtype=np.int64)
        self.level = np.asarray(self.level, dtype=np.int64)
        n = len(self.parent)
        if len(self.level) != n or len(self.name) != n:
            raise ValueError("parent, level and name must have one entry per node")
        if not self.description:
            self.description = [""] * n
        leaves = np.flatnonzero(self.level == 0)
        if len(leaves) and (leaves != np.arange(len(leaves))).any():
            raise ValueError("leaves must be nodes 0..n_leaves-1")
        has_parent = self.parent >= 0
        if (self.level[self.parent[has_parent]] != self.level[has_parent] + 1).any():
            raise ValueError("every parent must be exactly one level above its child")

    @property
    def n_nodes(self) -> int:
        return len(self.parent)

    @property
    def n_leaves(self) -> int:
        return int((self.level == 0).sum())

    @property
    def depth(self) -> int:
        """Number of levels including the leaves."""
        return int(self.level.max()) + 1 if self.n_nodes else 0

    def nodes_at(self, level: int) -> np.ndarray:
        return np.flatnonzero(self.level == level)

    def children(self, node: int) -> np.ndarray:
        return np.flatnonzero(self.parent == node)

    def path(self, node: int) -> list[int]:
        """The node and its ancestors, bottom-up."""
        out = [node]
        while self.parent[out[-1]] >= 0:
            out.append(int(self.parent[out[-1]]))
        return out

    def leaf_ancestors(self) -> sp.csr_matrix:
        """(n_leaves x n_nodes) 0/1 matrix: leaf i -> itself and every ancestor."""
        rows, cols = [], []
        current = np.arange(self.n_leaves)
        node = current.copy()
        while len(node):
            rows.append(current)
            cols.append(node)
            up = self.parent[node]
            keep = up >= 0
            current, node = current[keep], up[keep]
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)),
                             shape=(self.n_leaves, self.n_nodes))
