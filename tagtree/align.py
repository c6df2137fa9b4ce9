"""Alignment (sampling stage): target-sample grounding -> smoothed leaf distribution pi, KL to a
selection, and per-node quotas derived from pi.

Leaf distributions are "instance-normalised": every instance spreads one unit of mass over its
leaves in proportion to its grounding weights, so a distribution counts instances, not tags.
Smoothing mixes a distribution with the uniform one, p = (1 - eps) * m / sum(m) + eps / L, which
keeps KL(pi || p_S) finite when a selection misses a leaf the target uses.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def smoothed(mass: np.ndarray, smoothing: float) -> np.ndarray:
    """(1 - eps) * mass / total + eps / L; the uniform distribution when the mass is empty."""
    mass = np.asarray(mass, dtype=np.float64)
    n = len(mass)
    if n == 0:
        return mass
    total = mass.sum()
    if total <= 0:
        return np.full(n, 1.0 / n)
    return (1.0 - smoothing) * mass / total + smoothing / n


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats; q must be positive where p is (smooth it first)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    keep = p > 0
    return float(np.sum(p[keep] * (np.log(p[keep]) - np.log(q[keep]))))


def leaf_mass(leaf_dist: sp.csr_matrix, rows: np.ndarray | None = None) -> np.ndarray:
    """Instance-normalised leaf mass of ``rows`` (all rows when None)."""
    sub = leaf_dist if rows is None else leaf_dist[np.asarray(rows, dtype=np.int64)]
    return np.asarray(sub.sum(axis=0)).ravel()


def selection_kl(target_pi: np.ndarray, leaf_dist: sp.csr_matrix, rows, smoothing: float) -> float:
    """KL(pi || p_S) of the selection ``rows`` (pi already smoothed)."""
    return kl_divergence(target_pi, smoothed(leaf_mass(leaf_dist, rows), smoothing))


def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``weights`` summing exactly to ``total`` (Hamilton's method)."""
    weights = np.asarray(weights, dtype=np.float64)
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    exact = weights / weights.sum() * total
    out = np.floor(exact).astype(np.int64)
    short = total - int(out.sum())
    if short > 0:
        # Ties broken by index so the quotas are deterministic.
        order = np.lexsort((np.arange(len(exact)), -(exact - out)))
        out[order[:short]] += 1
    return out


def ancestor_at(parent: np.ndarray, level: np.ndarray, nodes: np.ndarray, at: int) -> np.ndarray:
    """The ancestor at level ``at`` of each node (the node itself when already there)."""
    nodes = np.asarray(nodes, dtype=np.int64).copy()
    for _ in range(int(level.max()) + 1 if len(level) else 0):
        below = (nodes >= 0) & (level[np.maximum(nodes, 0)] < at)
        if not below.any():
            break
        nodes[below] = parent[nodes[below]]
    return nodes


def level_mass(tree, leaf_mass_vec: np.ndarray, level: int) -> np.ndarray:
    """A leaf distribution summed onto the nodes of ``level`` (in ``tree.nodes_at`` order)."""
    up = tree.leaf_ancestors()[:, tree.nodes_at(level)]
    return np.asarray(up.T @ np.asarray(leaf_mass_vec, dtype=np.float64)).ravel()


def alignment_level(tree, target_leaf_mass: np.ndarray, k: int) -> int:
    """The lowest tree level at which the target touches at most ``k`` nodes: k instances can
    match a distribution over at most k parts, so a 4-instance selection is aligned on the
    4-ish top-level topics of its target, a 5,000-instance one on the target's leaves. (At the
    leaf level a small budget can only miss most target leaves, and KL there is dominated by
    the smoothing of those misses.)"""
    return lowest_level_within(
        (int((level_mass(tree, target_leaf_mass, lv) > 0).sum()) for lv in range(tree.depth)),
        k, tree.depth)


def lowest_level_within(touched, k: int, depth: int) -> int:
    """``alignment_level``'s rule on counts already at hand: the first level (from the leaves
    up) whose count of target-touched nodes in ``touched`` is at most k, else the top."""
    for level, count in enumerate(touched):
        if count <= max(1, k):
            return level
    return depth - 1


def level_kl(tree, target_leaf_mass: np.ndarray, leaf_dist: sp.csr_matrix, rows, level: int,
             smoothing: float) -> float:
    """KL(pi || p_S) on the nodes of ``level``: target and selection leaf masses summed there,
    both smoothed (``rows`` None: the whole pool)."""
    pi = smoothed(level_mass(tree, target_leaf_mass, level), smoothing)
    return kl_divergence(pi, smoothed(level_mass(tree, leaf_mass(leaf_dist, rows), level),
                                      smoothing))


def primary_leaves(leaf_dist: sp.csr_matrix) -> np.ndarray:
    """Each instance's heaviest leaf (lowest id on ties), -1 for an ungrounded instance."""
    g = sp.csr_matrix(leaf_dist)
    out = np.full(g.shape[0], -1, dtype=np.int64)
    nz = np.diff(g.indptr) > 0
    if nz.any():
        out[nz] = np.asarray(g[nz].argmax(axis=1)).ravel()
    return out
