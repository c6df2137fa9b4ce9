"""Sampling stage: scores + grounding (+ a target's grounding) -> selections, by TAGS.

Objective (reconstruction; the paper gives no formula):

    F(S) = sum_l gamma_l * sum_{v at level l} IC(v) * g(c_S(v)),   gamma_l = level_decay ** l
    c_S(v) = sum_{x in S} q(x) * w(x, v)                             (quality-weighted mass)
    g(c)   = [c > 0] + mass_weight * h(c),   h = log1p or sqrt

g is concave and non-decreasing on c >= 0 (the indicator is the limit of min(1, c / eps)), so F
is monotone submodular and greedy selection keeps the (1 - 1/e) guarantee. The indicator makes a
node's first coverage worth much more than piling onto it (the sampler covers every leaf before
repeating one unless IC ratios are extreme); the h term keeps quality and mass mattering.

Alignment ``penalty`` maximises F(S) - lambda' * KL(pi || p_S), p_S the selection's smoothed leaf
distribution. For a fixed budget k, -KL(pi || p_S) = sum_v pi(v) log(m_S(v) + alpha) + const(k),
a concave-over-modular (submodular) term, so the penalised objective stays greedy-friendly.
lambda' = align_lambda * k * s with s the mean leaf weight gamma_0 * IC(leaf): lambda = 1 makes
one unit of KL worth about one new leaf per selected instance. ``quota`` mode instead caps how
many instances each node at ``quota_level`` may take: quotas from pi by largest remainder; slots
no pool instance can fill are then filled by the unconstrained greedy.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tagtree.align import (
    ancestor_at,
    largest_remainder,
    normalise_rows,
    primary_leaves,
    smoothed,
)
from tagtree.hierarchy import KnowledgeTree

METHODS = ("tags", "random", "instag", "deita", "kcenter", "quality")


@dataclass
class SelectionProblem:
    """Everything a selector may look at, as arrays aligned on pool row index."""

    tree: KnowledgeTree
    weights: sp.csr_matrix  # (n x n_nodes) instance weights on every node (leaves + ancestors)
    quality: np.ndarray  # (n,) q(x) in (0, 1]
    ic: np.ndarray  # (n_nodes,) IC(v)
    embeddings: np.ndarray | None = None  # (n x d) L2-normalised, for deita / kcenter
    target_mass: np.ndarray | None = None  # (n_leaves,) instance-normalised target leaf mass

    def __post_init__(self):
        self.weights = sp.csr_matrix(self.weights, dtype=np.float64)
        self.weights.sort_indices()
        self.quality = np.asarray(self.quality, dtype=np.float64)
        self.leaf_dist = normalise_rows(self.weights[:, : self.tree.n_leaves])
        self.leaf_dist.sort_indices()

    @property
    def n(self) -> int:
        return self.weights.shape[0]

    def target_pi(self, smoothing: float) -> np.ndarray | None:
        if self.target_mass is None or np.sum(self.target_mass) <= 0:
            return None
        return smoothed(self.target_mass, smoothing)


# -- the greedy engine: a sum of concave-over-modular blocks --------------------------------------
class _Block:
    """One family of features f with weight w_f, per-instance values X[x, f] >= 0 and a concave
    per-feature gain; keeps the running totals c_f of the selection."""

    def __init__(self, X: sp.csr_matrix, weight: np.ndarray, kind: str, *, beta: float = 0.0,
                 shape: str = "log1p", alpha: float = 1.0):
        self.X = sp.csr_matrix(X, dtype=np.float64)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.kind, self.beta, self.shape, self.alpha = kind, beta, shape, alpha
        self.c = np.zeros(self.X.shape[1])

    def _h(self, c):
        return np.log1p(c) if self.shape == "log1p" else np.sqrt(c)

    def _terms(self, cols, vals, c):
        w = self.weight[cols]
        if self.kind == "align":
            return w * (np.log(self.alpha + c + vals) - np.log(self.alpha + c))
        first = ((c <= 0) & (vals > 0)).astype(np.float64)
        return w * (first + self.beta * (self._h(c + vals) - self._h(c)))

    def gains(self, rows: np.ndarray) -> np.ndarray:
        indptr = self.X.indptr
        starts = indptr[rows]
        lens = indptr[rows + 1] - starts
        total = int(lens.sum())
        if total == 0:
            return np.zeros(len(rows))
        seg = np.repeat(np.arange(len(rows)), lens)
        first = np.cumsum(lens) - lens
        pos = np.arange(total) - np.repeat(first - starts, lens)
        cols = self.X.indices[pos]
        terms = self._terms(cols, self.X.data[pos], self.c[cols])
        return np.bincount(seg, weights=terms, minlength=len(rows))

    def add(self, row: int) -> None:
        lo, hi = self.X.indptr[row], self.X.indptr[row + 1]
        np.add.at(self.c, self.X.indices[lo:hi], self.X.data[lo:hi])

    def value(self) -> float:
        c = self.c
        if self.kind == "align":
            return float(np.sum(self.weight * (np.log(self.alpha + c) - np.log(self.alpha))))
        return float(np.sum(self.weight * ((c > 0) + self.beta * self._h(c))))


class _Objective:
    def __init__(self, blocks: list[_Block]):
        self.blocks = blocks

    def gains(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = self.blocks[0].gains(rows)
        for b in self.blocks[1:]:
            out = out + b.gains(rows)
        return out

    def add(self, row: int) -> None:
        for b in self.blocks:
            b.add(row)

    def value(self) -> float:
        return sum(b.value() for b in self.blocks)


def plain_greedy(obj: _Objective, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference greedy: every step re-evaluates every remaining instance (O(n k); tests only).
    Ties go to the lowest row index."""
    remaining = np.ones(n, dtype=bool)
    order, gains = [], []
    for _ in range(min(k, n)):
        rows = np.flatnonzero(remaining)
        g = obj.gains(rows)
        best = int(np.argmax(g))
        row = int(rows[best])
        obj.add(row)
        remaining[row] = False
        order.append(row)
        gains.append(float(g[best]))
    return np.asarray(order, dtype=np.int64), np.asarray(gains)


def lazy_greedy(obj: _Objective, n: int, k: int, *, batch: int = 256, window: int = 4096,
                groups: np.ndarray | None = None, quotas: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Lazy greedy (Minoux): stale gains are upper bounds (submodularity), and a pick is accepted
    only when its gain was computed at the current step, so the result equals plain greedy's
    (ties to the lowest row).

    Instead of a Python heap of a million tuples, the bounds live in numpy arrays: a small
    *frontier* of rows being compared, and sorted *runs* of the others (at first one run: every
    row by initial gain). A tiny heap over the runs' first entries bounds everything outside
    the frontier. Each step takes the frontier's best; if a run's head beats it, ``window`` rows
    of that run join the frontier; if it is stale, the ``batch`` best frontier rows are
    re-evaluated in one vectorised call. A frontier grown past 4 windows keeps its best window
    and sorts the rest into a new run, so each step's argmax stays cheap.

    With ``groups``/``quotas`` a row is accepted only while its group (-1: none) has quota
    left; rows skipped for a full group are reconsidered without quotas if slots remain.
    """
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    stamp = np.zeros(n, dtype=np.int64)  # the step at which each bound was computed
    runs: list[list] = []  # [rows, bounds, next position], sorted by (-bound, row)
    heads: list[tuple[float, int, int]] = []  # (-bound, row, run) of each run's next entry

    def push_head(r: int) -> None:
        rows, bounds, at = runs[r]
        if at < len(rows):
            heapq.heappush(heads, (-float(bounds[at]), int(rows[at]), r))

    def add_run(rows: np.ndarray, bounds: np.ndarray) -> None:
        o = np.lexsort((rows, -bounds))
        runs.append([rows[o], bounds[o], 0])
        push_head(len(runs) - 1)

    add_run(np.arange(n), obj.gains(np.arange(n)))
    front = np.zeros(0, dtype=np.int64)
    bound = np.zeros(0)
    left = None if quotas is None else np.asarray(quotas, dtype=np.int64).copy()
    deferred: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, bounds) skipped for full quotas

    def defer_full(rows: np.ndarray, bounds: np.ndarray):
        """Move rows of full groups aside in one vectorised step; return the others."""
        if left is None:
            return rows, bounds
        g = groups[rows]
        full = (g >= 0) & (left[np.maximum(g, 0)] <= 0)
        if full.any():
            deferred.append((rows[full], bounds[full]))
        return rows[~full], bounds[~full]

    order, gains = [], []
    step = 0
    while len(order) < k:
        if len(front):
            top = bound.max()
            ties = np.flatnonzero(bound == top)
            j = int(ties[np.argmin(front[ties])]) if len(ties) > 1 else int(ties[0])
            row = int(front[j])
        if heads and (not len(front) or -heads[0][0] > top
                      or (-heads[0][0] == top and heads[0][1] < row)):
            _, _, r = heapq.heappop(heads)
            rows, bounds, at = runs[r]
            runs[r][2] = at + window
            push_head(r)
            new_rows, new_bounds = defer_full(rows[at:at + window], bounds[at:at + window])
            front = np.concatenate([front, new_rows])
            bound = np.concatenate([bound, new_bounds])
            if len(front) > 4 * window:  # keep the best window, park the rest as a run
                keep = np.zeros(len(front), dtype=bool)
                keep[np.argpartition(-bound, window - 1)[:window]] = True
                add_run(front[~keep], bound[~keep])
                front, bound = front[keep], bound[keep]
            continue
        if not len(front):
            if not deferred:
                break
            add_run(np.concatenate([r for r, _ in deferred]),
                    np.concatenate([b for _, b in deferred]))
            deferred, left = [], None  # quota pass done: fill what remains freely
            continue
        if stamp[row] == step:
            obj.add(row)
            order.append(row)
            gains.append(float(bound[j]))
            step += 1
            front[j], bound[j] = front[-1], bound[-1]  # swap-remove
            front, bound = front[:-1], bound[:-1]
            if left is not None and groups[row] >= 0:
                left[groups[row]] -= 1
                if left[groups[row]] <= 0:  # the group just filled: set its rows aside
                    front, bound = defer_full(front, bound)
            continue
        if len(front) <= batch:
            idx = np.arange(len(front))
        else:  # the best bounds, always including the chosen row (ties may leave it out)
            idx = np.argpartition(-bound, batch - 1)[:batch]
            idx = np.append(idx[idx != j], j)
        rows = front[idx]
        bound[idx] = obj.gains(rows)
        stamp[rows] = step
    return np.asarray(order, dtype=np.int64), np.asarray(gains)


def stochastic_greedy(obj: _Objective, n: int, k: int, *, epsilon: float = 0.01,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stochastic greedy (Mirzasoleiman et al. 2015): each step takes the best of
    (n / k) * log(1 / epsilon) random remaining instances; (1 - 1/e - epsilon) in expectation."""
    k = min(k, n)
    sample = max(1, math.ceil(n / max(k, 1) * math.log(1.0 / epsilon)))
    rem = np.arange(n)
    size = n
    order, gains = [], []
    for _ in range(k):
        pick = rng.choice(size, size=min(sample, size), replace=False) if sample < size \
            else np.arange(size)
        g = obj.gains(rem[pick])
        best = int(np.argmax(g))
        pos = int(pick[best])
        row = int(rem[pos])
        obj.add(row)
        order.append(row)
        gains.append(float(g[best]))
        size -= 1
        rem[pos], rem[size] = rem[size], rem[pos]  # swap-remove keeps sampling O(sample)
    return np.asarray(order, dtype=np.int64), np.asarray(gains)


class TagsSampler:
    """TAGS selection. ``fit(problem, k)`` sets ``selected_`` (rows in pick order), ``gains_``
    (marginal gain of each pick), ``objective_`` (final value, including the alignment term) and
    ``aligned_`` (whether a target steered the selection)."""

    name = "tags"

    def __init__(self, level_decay: float = 0.7, concave: str = "log1p",
                 mass_weight: float = 0.25, align: str = "penalty", align_lambda: float = 1.0,
                 align_smoothing: float = 0.01, quota_level: int = 0, strategy: str = "lazy",
                 epsilon: float = 0.01, batch: int = 256, window: int = 4096,
                 random_state: int = 0):
        self.level_decay = level_decay
        self.concave = concave
        self.mass_weight = mass_weight
        self.align = align
        self.align_lambda = align_lambda
        self.align_smoothing = align_smoothing
        self.quota_level = quota_level
        self.strategy = strategy
        self.epsilon = epsilon
        self.batch = batch
        self.window = window
        self.random_state = random_state

    def level_weights(self, tree: KnowledgeTree) -> np.ndarray:
        return self.level_decay ** tree.level.astype(np.float64)

    def objective(self, problem: SelectionProblem, k: int) -> tuple[_Objective, np.ndarray | None]:
        """The objective's blocks for budget k, and pi when alignment applies."""
        node_w = self.level_weights(problem.tree) * problem.ic
        coverage = sp.csr_matrix(sp.diags(problem.quality) @ problem.weights)
        blocks = [_Block(coverage, node_w, "tree", beta=self.mass_weight, shape=self.concave)]
        pi = problem.target_pi(self.align_smoothing) if self.align != "none" else None
        if pi is not None and self.align == "penalty" and self.align_lambda > 0 and k > 0:
            n_leaves = problem.tree.n_leaves
            leaf_ic = problem.ic[:n_leaves][problem.ic[:n_leaves] > 0]
            scale = float(leaf_ic.mean()) if len(leaf_ic) else 1.0
            eps = self.align_smoothing
            alpha = eps * k / ((1.0 - eps) * n_leaves) if eps < 1 else 1.0
            blocks.append(_Block(problem.leaf_dist, self.align_lambda * k * scale * pi, "align",
                                 alpha=max(alpha, 1e-12)))
        return _Objective(blocks), pi

    def fit(self, problem: SelectionProblem, k: int) -> TagsSampler:
        k = max(0, min(int(k), problem.n))
        obj, pi = self.objective(problem, k)
        self.aligned_ = pi is not None
        if self.strategy == "plain":
            order, gains = plain_greedy(obj, problem.n, k)
        elif pi is not None and self.align == "quota":  # quotas need the lazy greedy's queue
            groups, quotas = self._quotas(problem, pi, k)
            order, gains = lazy_greedy(obj, problem.n, k, batch=self.batch, window=self.window,
                                       groups=groups, quotas=quotas)
        elif self.strategy == "stochastic":
            order, gains = stochastic_greedy(obj, problem.n, k, epsilon=self.epsilon,
                                             rng=np.random.default_rng(self.random_state))
        else:
            order, gains = lazy_greedy(obj, problem.n, k, batch=self.batch, window=self.window)
        self.selected_, self.gains_, self.objective_ = order, gains, obj.value()
        return self

    def _quotas(self, problem: SelectionProblem, pi: np.ndarray, k: int):
        """Group = the ancestor at ``quota_level`` of an instance's heaviest leaf; quota of a
        group = its share of pi (summed over its leaves) times k, by largest remainder."""
        tree = problem.tree
        level = min(self.quota_level, tree.depth - 1)
        leaf_group = ancestor_at(tree.parent, tree.level, np.arange(tree.n_leaves), level)
        group_pi = np.bincount(leaf_group, weights=pi, minlength=tree.n_nodes)
        quotas = largest_remainder(group_pi, k)
        primary = primary_leaves(problem.leaf_dist)
        groups = np.where(primary >= 0, leaf_group[np.maximum(primary, 0)], -1)
        return groups, quotas
