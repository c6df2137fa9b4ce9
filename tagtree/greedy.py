"""The greedy engine of the TAGS objective (``tagtree.sampling``): an objective is a sum of
blocks, each a family of features with a weight and a concave (or facility, linear, align) gain,
and three greedy drivers over it -- plain (the reference), lazy (Minoux; exact) and stochastic
(Mirzasoleiman et al. 2015). Submodular blocks make stale gains upper bounds, which is what the
lazy greedy relies on."""

from __future__ import annotations

import heapq
import math

import numpy as np
import scipy.sparse as sp


class Block:
    """One family of features f with weight w_f, per-instance values X[x, f] >= 0 and a concave
    per-feature gain; keeps the running totals c_f of the selection."""

    def __init__(self, X: sp.csr_matrix, weight: np.ndarray, kind: str, *,
                 shape: str = "log1p", alpha: float = 1.0):
        self.X = sp.csr_matrix(X, dtype=np.float64)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.kind, self.shape, self.alpha = kind, shape, alpha
        self.c = np.zeros(self.X.shape[1])

    def _h(self, c):
        return np.log1p(c) if self.shape == "log1p" else np.sqrt(c)

    def _terms(self, cols, vals, c):
        w = self.weight[cols]
        if self.kind == "align":
            return w * (np.log(self.alpha + c + vals) - np.log(self.alpha + c))
        if self.kind == "linear":
            return w * vals
        if self.kind == "facility":  # c is the best membership so far
            return w * np.maximum(0.0, vals - c)
        return w * (self._h(c + vals) - self._h(c))  # "mass"

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
        cols = self.X.indices[lo:hi]
        if self.kind == "facility":
            self.c[cols] = np.maximum(self.c[cols], self.X.data[lo:hi])
        else:
            np.add.at(self.c, cols, self.X.data[lo:hi])

    def set_selection(self, rows: np.ndarray) -> None:
        """The running totals of exactly ``rows`` (a swap is judged against S - i, which
        ``add`` alone cannot reach)."""
        if len(rows) == 0:
            self.c = np.zeros(self.X.shape[1])
            return
        sub = self.X[np.asarray(rows, dtype=np.int64)]
        if self.kind == "facility":  # values are >= 0, so a max over no pick is 0 as before
            self.c = sub.max(axis=0).toarray().ravel().astype(np.float64)
        else:
            self.c = np.asarray(sub.sum(axis=0), dtype=np.float64).ravel()

    def drop(self, row: int, pos: int, picks: sp.csc_matrix | None) -> tuple:
        """Take the pick ``row`` (at ``pos`` of the selection whose rows of X are ``picks``,
        column-major; needed by "facility" only) out of the totals; returns what ``restore``
        puts back. Only the row's own columns change."""
        lo, hi = self.X.indptr[row], self.X.indptr[row + 1]
        cols = self.X.indices[lo:hi]
        saved = self.c[cols].copy()
        if self.kind == "facility":  # the best of the other picks, column by column
            for col in cols:
                a, b = picks.indptr[col], picks.indptr[col + 1]
                others = picks.data[a:b][picks.indices[a:b] != pos]
                self.c[col] = others.max() if others.size else 0.0
        else:
            np.subtract.at(self.c, cols, self.X.data[lo:hi])
        return cols, saved

    def restore(self, undo: tuple) -> None:
        cols, saved = undo
        self.c[cols] = saved

    def value(self) -> float:
        c = self.c
        if self.kind == "align":
            return float(np.sum(self.weight * (np.log(self.alpha + c) - np.log(self.alpha))))
        if self.kind in ("linear", "facility"):
            return float(np.sum(self.weight * c))
        return float(np.sum(self.weight * self._h(c)))


class Objective:
    def __init__(self, blocks: list[Block]):
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

    def set_selection(self, rows: np.ndarray) -> None:
        for b in self.blocks:
            b.set_selection(rows)

    def value(self) -> float:
        return sum(b.value() for b in self.blocks)


def plain_greedy(obj: Objective, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
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


def replay_gains(obj: Objective, order: np.ndarray) -> np.ndarray:
    """Marginal gain of each pick in ``order`` from an empty selection (after a selection was
    edited, e.g. by ``tagtree.length_balance``); leaves ``obj`` holding the whole order."""
    obj.set_selection(np.empty(0, dtype=np.int64))
    gains = np.empty(len(order))
    for pos, row in enumerate(np.asarray(order, dtype=np.int64)):
        gains[pos] = obj.gains(np.array([row]))[0]
        obj.add(int(row))
    return gains


# Below this many rows the numpy driver is as fast as compiling (a first call compiles for
# ~2-5 s when Numba's cache is cold).
JIT_MIN_ROWS = 50_000


def lazy_greedy(obj: Objective, n: int, k: int, *, batch: int = 256, window: int = 4096,
                groups: np.ndarray | None = None, quotas: np.ndarray | None = None,
                jit: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
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

    From ``JIT_MIN_ROWS`` rows on, the compiled driver (``tagtree.greedy_jit``, same picks)
    runs instead when Numba is installed; ``jit`` forces it on (True) or off (False).
    """
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    from tagtree import greedy_jit

    if greedy_jit.AVAILABLE and (jit if jit is not None else n >= JIT_MIN_ROWS):
        return greedy_jit.lazy_greedy(obj, n, k, groups=groups, quotas=quotas)
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


def stochastic_greedy(obj: Objective, n: int, k: int, *, epsilon: float = 0.01,
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
