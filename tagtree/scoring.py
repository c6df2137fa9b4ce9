"""Scoring stage: knowledge tree + grounding (instance_nodes) [+ judgements] -> scores.

Tree statistics: pool mass n(v) = sum of the instances' weights on v (leaf weights propagated to
every ancestor), information content IC(v) = -log(n(v) / N) with N the total leaf mass. Instance
scores (all in [0, 1], higher is better):

- richness(x): the IC summed over the distinct nodes on x's paths (a node shared by two of its
  leaves counts once, so spanning branches beats piling tags into one leaf), divided by the
  ``richness_quantile`` of the pool and clipped at 1 (robust to a few tag-stuffed outliers);
- judge(x): an optional LLM rating r in 1..6 mapped to (r - 1) / 5; NaN when not judged;
- quality(x) = floor + (1 - floor) * [(1 - w) * richness + w * judge] (w = 0 when not judged).
  The floor keeps every instance's quality positive, so a low score shrinks an instance's weight
  in the sampling objective instead of erasing it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tagtree.hierarchy import KnowledgeTree


def node_weights(tree: KnowledgeTree, grounding: sp.spmatrix) -> sp.csr_matrix:
    """(n_instances x n_leaves) leaf weights -> (n_instances x n_nodes) weights on every node."""
    g = sp.csr_matrix(grounding, dtype=np.float64)
    if g.shape[1] != tree.n_leaves:
        raise ValueError(f"grounding has {g.shape[1]} columns, the tree {tree.n_leaves} leaves")
    out = sp.csr_matrix(g @ tree.leaf_ancestors().astype(np.float64))
    out.sort_indices()
    return out


def pool_mass(weights: sp.csr_matrix) -> np.ndarray:
    """n(v): the pool's weight on every node."""
    return np.asarray(weights.sum(axis=0)).ravel()


def information_content(mass: np.ndarray, total: float) -> np.ndarray:
    """IC(v) = -log(n(v) / N); 0 for nodes no instance reaches (they can never be covered)."""
    mass = np.asarray(mass, dtype=np.float64)
    ic = np.zeros_like(mass)
    if total > 0:
        seen = mass > 0
        ic[seen] = np.maximum(0.0, -np.log(mass[seen] / total))
    return ic


def distribution_summary(values: np.ndarray, bins: int = 10) -> dict:
    """Count, moments, quantiles, a histogram, and a ``collapsed`` flag raised when the score
    barely varies (std < 1e-3 or one value holds more than half the instances): a scorer that
    gives everyone the same number cannot rank anything."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return {"count": 0, "collapsed": True}
    q = np.quantile(v, [0.0, 0.1, 0.5, 0.9, 1.0])
    _, counts = np.unique(np.round(v, 4), return_counts=True)
    hist, edges = np.histogram(v, bins=bins)
    top_share = float(counts.max() / len(v))
    return {
        "count": int(len(v)), "mean": float(v.mean()), "std": float(v.std()),
        "min": float(q[0]), "p10": float(q[1]), "median": float(q[2]), "p90": float(q[3]),
        "max": float(q[4]), "distinct": int(len(counts)), "top_value_share": top_share,
        "histogram": [int(h) for h in hist], "edges": [float(e) for e in edges],
        "collapsed": bool(v.std() < 1e-3 or (len(v) > 1 and top_share > 0.5)),
    }


class TreeScorer:
    """Tree statistics and instance scores for one grounded pool.

    Fitted attributes: ``weights_`` (instances x nodes), ``mass_`` n(v), ``total_`` N, ``ic_``
    IC(v), ``richness_``, ``judge_`` (NaN where unjudged), ``quality_``.
    """

    def __init__(self, judge_weight: float = 0.5, richness_quantile: float = 0.99,
                 quality_floor: float = 0.2):
        self.judge_weight = judge_weight
        self.richness_quantile = richness_quantile
        self.quality_floor = quality_floor

    def fit(self, tree: KnowledgeTree, grounding: sp.spmatrix,
            judge_ratings: np.ndarray | None = None) -> TreeScorer:
        self.weights_ = node_weights(tree, grounding)
        self.mass_ = pool_mass(self.weights_)
        leaf_total = float(self.mass_[: tree.n_leaves].sum())
        self.total_ = leaf_total
        self.ic_ = information_content(self.mass_, leaf_total)
        self.richness_ = self._richness(self.weights_, self.ic_)
        n = self.weights_.shape[0]
        ratings = (np.full(n, np.nan) if judge_ratings is None
                   else np.asarray(judge_ratings, dtype=np.float64))
        if len(ratings) != n:
            raise ValueError("one judge rating (or NaN) per instance expected")
        self.judge_ = np.clip((ratings - 1.0) / 5.0, 0.0, 1.0)
        w = np.where(np.isnan(self.judge_), 0.0, self.judge_weight)
        base = (1.0 - w) * self.richness_ + w * np.nan_to_num(self.judge_)
        self.quality_ = self.quality_floor + (1.0 - self.quality_floor) * base
        return self

    def _richness(self, weights: sp.csr_matrix, ic: np.ndarray) -> np.ndarray:
        present = weights.copy()
        present.data = (present.data > 0).astype(np.float64)
        raw = present @ ic
        positive = raw[raw > 0]
        if len(positive) == 0:
            return np.zeros(len(raw))
        scale = float(np.quantile(positive, self.richness_quantile))
        return np.clip(raw / scale, 0.0, 1.0) if scale > 0 else np.zeros(len(raw))

    def summary(self) -> dict:
        return {
            "instances": int(self.weights_.shape[0]),
            "judged": int((~np.isnan(self.judge_)).sum()),
            "richness": distribution_summary(self.richness_),
            "judge": distribution_summary(self.judge_),
            "quality": distribution_summary(self.quality_),
        }
