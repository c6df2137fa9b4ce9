"""Selection metrics (sampling stage): a selection of the pool -> selection_metrics rows.

All computed on the knowledge tree, so any method's selection is judged by the same yardstick:

- ``leaf_coverage``: share of the leaves the pool reaches that the selection reaches (0..1, up);
- ``entropy_l<l>``: entropy of the selection's instance-normalised mass over the nodes of level
  l, divided by log(number of nodes the pool reaches there) (0..1, up = more even);
- ``kl_target``: KL(pi || p_S) in nats to the target's smoothed leaf distribution (>= 0, down);
- ``kl_target_aligned``: the same KL on the nodes of the alignment level for this selection's
  size (``align_level``: the lowest level where the target touches at most k nodes), the level
  TAGS aligns on (>= 0, down);
- ``mean_quality``: mean q(x) of the selection (0..1, up);
- ``length_ratio``: the selection's mean instruction length over the pool's (near 1: neither
  the long nor the short instances favoured), when the problem carries lengths;
- ``same_leaves``: selected instances grounded on exactly the leaves of an earlier pick (down);
- ``near_duplicates``: selected instances with cosine >= ``dup_threshold`` to an earlier pick,
  when embeddings exist (down).
"""

from __future__ import annotations

import numpy as np

from tagtree.align import alignment_level, leaf_mass, level_kl, selection_kl, smoothed
from tagtree.length_balance import length_ratio
from tagtree.sampling import SelectionProblem


def level_entropies(problem: SelectionProblem, rows: np.ndarray) -> dict[str, float]:
    tree = problem.tree
    up = tree.leaf_ancestors().astype(np.float64)
    sel = leaf_mass(problem.leaf_dist, rows) @ up
    reach = leaf_mass(problem.leaf_dist) @ up
    out = {}
    for lvl in range(tree.depth):
        nodes = tree.nodes_at(lvl)
        reachable = int((reach[nodes] > 0).sum())
        if reachable < 2:
            continue  # a single node has no spread to measure
        m = sel[nodes]
        total = m.sum()
        if total <= 0:
            out[f"entropy_l{lvl}"] = 0.0
            continue
        p = m[m > 0] / total
        out[f"entropy_l{lvl}"] = float(-(p * np.log(p)).sum() / np.log(reachable))
    return out


def count_same_leaves(problem: SelectionProblem, rows: np.ndarray) -> int:
    ld = problem.leaf_dist
    seen: set[bytes] = set()
    repeats = 0
    for r in rows:
        sig = ld.indices[ld.indptr[r]:ld.indptr[r + 1]].tobytes()
        if not sig:
            continue
        if sig in seen:
            repeats += 1
        seen.add(sig)
    return repeats


def count_near_duplicates(emb: np.ndarray, rows: np.ndarray, threshold: float,
                          chunk: int = 2048) -> int:
    """Picks whose cosine to an *earlier* pick reaches the threshold (blockwise, O(k^2 d))."""
    x = np.asarray(emb[rows], dtype=np.float32)
    dup = np.zeros(len(rows), dtype=bool)
    for start in range(0, len(rows), chunk):
        block = x[start:start + chunk]
        sims = block @ x[: start + len(block)].T
        # only earlier picks count: mask the diagonal and everything after it
        idx = np.arange(len(block))[:, None] + start
        sims[np.arange(sims.shape[1])[None, :] >= idx] = -np.inf
        dup[start:start + len(block)] = (sims.max(axis=1) >= threshold) if sims.shape[1] else False
    return int(dup.sum())


def evaluate(problem: SelectionProblem, rows, *, smoothing: float = 0.01,
             dup_threshold: float = 0.95, near_duplicates: bool = True) -> dict[str, float]:
    """Every metric of one selection (pool rows) as a flat {metric: value} dict.
    ``near_duplicates=False`` skips the O(k^2) embedding check (e.g. for the whole pool)."""
    rows = np.asarray(rows, dtype=np.int64)
    n_leaves = problem.tree.n_leaves
    sel_leaves = leaf_mass(problem.leaf_dist, rows) > 0 if len(rows) else np.zeros(n_leaves, bool)
    pool_leaves = leaf_mass(problem.leaf_dist) > 0
    out: dict[str, float] = {
        "selected": float(len(rows)),
        "leaf_coverage": float(sel_leaves.sum() / max(1, pool_leaves.sum())),
    }
    out |= level_entropies(problem, rows)
    pi = problem.target_pi(smoothing)
    if pi is not None:
        out["kl_target"] = selection_kl(pi, problem.leaf_dist, rows, smoothing)
        level = alignment_level(problem.tree, problem.target_mass, len(rows))
        out["align_level"] = float(level)
        out["kl_target_aligned"] = level_kl(problem.tree, problem.target_mass,
                                            problem.leaf_dist, rows, level, smoothing)
    out["mean_quality"] = float(problem.quality[rows].mean()) if len(rows) else 0.0
    ratio = length_ratio(problem.lengths, rows) if problem.lengths is not None else np.nan
    if np.isfinite(ratio):  # not for an empty selection, nor a pool of empty instructions
        out["length_ratio"] = ratio
    out["same_leaves"] = float(count_same_leaves(problem, rows))
    if near_duplicates and problem.embeddings is not None and len(rows):
        out["near_duplicates"] = float(
            count_near_duplicates(problem.embeddings, rows, dup_threshold))
    return out


def pool_kl(problem: SelectionProblem, smoothing: float = 0.01) -> float | None:
    """KL(pi || p_pool): how far the whole pool is from the target (the 'before' figure)."""
    pi = problem.target_pi(smoothing)
    if pi is None:
        return None
    return float(np.sum(pi * (np.log(pi) - np.log(smoothed(leaf_mass(problem.leaf_dist),
                                                             smoothing)))))
