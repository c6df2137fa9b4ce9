"""The lazy greedy of ``tagtree.greedy`` compiled with Numba: the same picks, in one pass.

The greedy is sequential by nature (each pick changes every later gain), and the numpy driver
pays ~40 array calls per step: 24.5 s of a 1M-instance, 50K-pick selection went to that
overhead, against 3-4 s for DEITA. Compiled, the objective's blocks become one fused CSR matrix
(a kind, weight and running total per column) and the lazy greedy keeps a binary heap of
(-bound, row): a popped row whose bound was computed at the current step is taken, any other is
re-evaluated and pushed back. Ties go to the lowest row, as in ``plain_greedy``.

Numba is optional: without it (or with ``TAGTREE_NO_JIT=1``) ``tagtree.greedy.lazy_greedy``
runs its numpy driver, which gives the same result.
"""

from __future__ import annotations

import os

import numpy as np

try:  # a missing or broken numba must never stop a selection
    if os.environ.get("TAGTREE_NO_JIT", "").strip() in ("1", "true", "yes"):
        raise ImportError("disabled by TAGTREE_NO_JIT")
    from numba import njit
    AVAILABLE = True
except Exception:  # noqa: BLE001 - ImportError, or numba failing to load its LLVM
    AVAILABLE = False

    def njit(*args, **kwargs):  # the decorated functions are then never called
        return (lambda f: f) if not args or not callable(args[0]) else args[0]

FACILITY, MASS_LOG1P, MASS_SQRT, LINEAR, ALIGN = 0, 1, 2, 3, 4


def fuse(obj):
    """(indptr, indices, data, kind, weight, alpha, offsets) of the objective's blocks side by
    side: one CSR row per instance holding every block's features, one entry per column."""
    import scipy.sparse as sp

    mats, kinds, weights, alphas, offsets = [], [], [], [], [0]
    for b in obj.blocks:
        m = b.X.shape[1]
        mats.append(b.X)
        code = {"facility": FACILITY, "linear": LINEAR, "align": ALIGN}.get(
            b.kind, MASS_LOG1P if b.shape == "log1p" else MASS_SQRT)
        kinds.append(np.full(m, code, np.int8))
        weights.append(np.asarray(b.weight, np.float64))
        alphas.append(np.full(m, b.alpha, np.float64))
        offsets.append(offsets[-1] + m)
    x = sp.hstack(mats, format="csr", dtype=np.float64)
    x.sort_indices()
    return (x.indptr.astype(np.int64), x.indices.astype(np.int64), x.data,
            np.concatenate(kinds), np.concatenate(weights), np.concatenate(alphas), offsets)


@njit(cache=True, nogil=True)
def _gain(r, indptr, indices, data, kind, weight, alpha, c):
    g = 0.0
    for p in range(indptr[r], indptr[r + 1]):
        j = indices[p]
        v = data[p]
        kd = kind[j]
        if kd == 0:
            d = v - c[j]
            if d > 0.0:
                g += weight[j] * d
        elif kd == 1:
            g += weight[j] * (np.log1p(c[j] + v) - np.log1p(c[j]))
        elif kd == 2:
            g += weight[j] * (np.sqrt(c[j] + v) - np.sqrt(c[j]))
        elif kd == 3:
            g += weight[j] * v
        else:
            g += weight[j] * (np.log(alpha[j] + c[j] + v) - np.log(alpha[j] + c[j]))
    return g


@njit(cache=True, nogil=True)
def _add(r, indptr, indices, data, kind, c):
    for p in range(indptr[r], indptr[r + 1]):
        j = indices[p]
        if kind[j] == 0:
            if data[p] > c[j]:
                c[j] = data[p]
        else:
            c[j] += data[p]


@njit(cache=True, nogil=True)
def _less(ka, ra, kb, rb):  # heap order: larger bound first, then lower row
    return ka > kb or (ka == kb and ra < rb)


@njit(cache=True, nogil=True)
def _sift_down(keys, rows, size, i):
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        best = left
        right = left + 1
        if right < size and _less(keys[right], rows[right], keys[left], rows[left]):
            best = right
        if _less(keys[best], rows[best], keys[i], rows[i]):
            keys[i], keys[best] = keys[best], keys[i]
            rows[i], rows[best] = rows[best], rows[i]
            i = best
        else:
            return


@njit(cache=True, nogil=True)
def _heapify(keys, rows, size):
    for i in range(size // 2 - 1, -1, -1):
        _sift_down(keys, rows, size, i)


@njit(cache=True, nogil=True)
def _lazy(indptr, indices, data, kind, weight, alpha, c, k, groups, quotas, use_quotas):
    n = len(indptr) - 1
    keys = np.empty(n, np.float64)
    rows = np.arange(n).astype(np.int64)
    for r in range(n):
        keys[r] = _gain(r, indptr, indices, data, kind, weight, alpha, c)
    stamp = np.zeros(n, np.int64)
    size = n
    _heapify(keys, rows, size)
    left = quotas.copy()
    deferred_keys = np.empty(n, np.float64)
    deferred_rows = np.empty(n, np.int64)
    n_deferred = 0
    order = np.empty(k, np.int64)
    gains = np.empty(k, np.float64)
    step = 0
    while step < k:
        if size == 0:
            if n_deferred == 0:
                break
            # quota pass done: the rows set aside for full groups compete freely for the rest
            for i in range(n_deferred):
                keys[i] = deferred_keys[i]
                rows[i] = deferred_rows[i]
            size = n_deferred
            n_deferred = 0
            use_quotas = False
            _heapify(keys, rows, size)
            continue
        bound, r = keys[0], rows[0]
        if use_quotas and groups[r] >= 0 and left[groups[r]] <= 0:
            deferred_keys[n_deferred] = bound
            deferred_rows[n_deferred] = r
            n_deferred += 1
            size -= 1
            keys[0], rows[0] = keys[size], rows[size]
            _sift_down(keys, rows, size, 0)
            continue
        if stamp[r] == step:  # fresh: no other bound is higher
            _add(r, indptr, indices, data, kind, c)
            order[step] = r
            gains[step] = bound
            step += 1
            if use_quotas and groups[r] >= 0:
                left[groups[r]] -= 1
            size -= 1
            keys[0], rows[0] = keys[size], rows[size]
            _sift_down(keys, rows, size, 0)
            continue
        keys[0] = _gain(r, indptr, indices, data, kind, weight, alpha, c)
        stamp[r] = step
        _sift_down(keys, rows, size, 0)
    return order[:step], gains[:step]


def lazy_greedy(obj, n: int, k: int, groups=None, quotas=None):
    """``tagtree.greedy.lazy_greedy`` compiled; the blocks' running totals are updated as if
    each pick had been added to them."""
    indptr, indices, data, kind, weight, alpha, offsets = fuse(obj)
    c = np.concatenate([b.c for b in obj.blocks]).astype(np.float64)
    use = quotas is not None
    g = np.asarray(groups, np.int64) if use else np.full(n, -1, np.int64)
    q = np.asarray(quotas, np.int64) if use else np.zeros(1, np.int64)
    order, gains = _lazy(indptr, indices, data, kind, weight, alpha, c, int(min(k, n)), g, q, use)
    for b, lo, hi in zip(obj.blocks, offsets[:-1], offsets[1:], strict=True):
        b.c = c[lo:hi].copy()
    return order, gains
