"""Clustering for the tree stage (``tagtree.tree``): spherical k-means with FAISS (k-means++
seeding, restarts), a consensus of many k-means runs for the top level, a two-stage IVF-style
k-means for large k (a coarse partition into about sqrt(k) groups, then k-means inside each
group, so 1M tags never meet a full n x k distance matrix), and the split of oversized
catch-all clusters."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from tagtree.vectors import l2_normalise_rows


def group_means(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """L2-normalised mean vector of each label (one sparse product, no Python loop)."""
    one_hot = sp.csr_matrix((np.ones(len(labels), np.float32), (labels, np.arange(len(labels)))),
                            shape=(k, len(labels)))
    return l2_normalise_rows(np.asarray(one_hot @ x))


def compact(labels: np.ndarray) -> np.ndarray:
    """Relabel to 0..k-1 in order of first appearance-free sorted ids (drops empty clusters)."""
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def kmeans(x: np.ndarray, k: int, *, weights: np.ndarray | None = None, seed: int = 0,
           niter: int = 20, restarts: int = 1, small_work: float = 2e7,
           manage_threads: bool = True, max_points_per_centroid: int = 256) -> np.ndarray:
    """Spherical k-means labels (0..k'-1, k' <= k after dropping empty clusters); ``restarts``
    k-means++-seeded runs (only when n * k * d <= ``small_work``) keep the best objective.
    FAISS trains on at most ``max_points_per_centroid`` * k sampled points."""
    import faiss

    n, d = x.shape
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = None if weights is None else np.ascontiguousarray(weights, dtype=np.float32)
    work = n * k * d
    n_init = restarts if work <= small_work else 1
    if not manage_threads:
        return compact(_restarts(faiss, x, w, k, d, n, niter, seed, n_init,
                                 max_points_per_centroid))
    # OpenMP threads on a small problem cost more in wake-ups than they save (30x slower on a
    # busy 2-core machine): run small ones single-threaded.
    with single_threaded(work <= 5 * small_work):
        return compact(_restarts(faiss, x, w, k, d, n, niter, seed, n_init,
                                 max_points_per_centroid))


def consensus_kmeans(x: np.ndarray, k: int, *, weights: np.ndarray | None = None,
                     seed: int = 0, runs: int = 50, max_items: int = 6000) -> np.ndarray:
    """Evidence-accumulation consensus of ``runs`` k-means partitions (Fred & Jain 2005): the
    share of runs in which two items fall together is their similarity, and average linkage of
    it cut into k clusters is the partition. Weighted spherical k-means++ runs on every item
    (``weights``: instance mass). Why: on the top level many partitions have near-equal
    k-means objectives, so best-of-restarts picked one almost at random (top-level NMI on
    MT-Bench 0.52-0.60 over tree seeds); what most runs agree on is steadier and on average
    better (``docs/tree.md``, 4b). The agreement matrix is items^2, so above ``max_items`` it
    is built on the heaviest ``max_items`` items and every other item joins the consensus
    cluster whose mean it is most similar to."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    if runs < 1:
        raise ValueError(f"consensus_kmeans needs at least one run, got runs={runs}")
    n = len(x)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
    core = (np.arange(n) if n <= max_items
            else np.sort(np.argsort(-w, kind="stable")[:max_items]))
    xc, wc = x[core], w[core]
    together = np.zeros((len(core), len(core)), np.float32)
    for r in range(runs):
        labels = kmeans(xc, k, weights=wc, seed=seed + 7919 * r, small_work=np.inf,
                        max_points_per_centroid=len(xc))
        one_hot = np.zeros((len(core), int(labels.max()) + 1), np.float32)
        one_hot[np.arange(len(core)), labels] = 1.0
        together += one_hot @ one_hot.T
    together /= runs  # in place: one items^2 array, not three
    distance = np.subtract(1.0, together, out=together)
    np.fill_diagonal(distance, 0.0)
    condensed = squareform(distance, checks=False).astype(np.float64)
    del together, distance
    tree = linkage(condensed, method="average")
    core_labels = compact(fcluster(tree, k, criterion="maxclust"))
    if len(core) == n:
        return core_labels
    centres = group_means(xc, core_labels, int(core_labels.max()) + 1)
    out = np.empty(n, dtype=np.int64)
    out[core] = core_labels
    rest = np.setdiff1d(np.arange(n), core, assume_unique=True)
    for lo in range(0, len(rest), 65536):  # bounded memory: rows x k at a time
        part = rest[lo:lo + 65536]
        out[part] = np.argmax(l2_normalise_rows(x[part]) @ centres.T, axis=1)
    return compact(out)


@contextmanager
def single_threaded(on: bool = True):
    """FAISS (OpenMP) and BLAS (k-means++ products) on one thread inside the block."""
    import faiss

    threads = faiss.omp_get_max_threads()
    if on:
        faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(1 if on else None):
            yield
    finally:
        faiss.omp_set_num_threads(threads)


def _restarts(faiss, x, w, k, d, n, niter, seed, n_init, max_points=256) -> np.ndarray:
    """Best of ``n_init`` k-means++-seeded runs by the spherical objective (weighted cosine)."""
    best, best_obj = None, -np.inf
    for attempt in range(n_init):
        s = seed + 7919 * attempt
        km = faiss.Kmeans(d, k, niter=niter, seed=s, spherical=True, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=max_points)
        km.train(x, weights=w, init_centroids=kmeans_pp_init(x, k, w, s))
        sims, labels = km.index.search(x, 1)
        obj = float(sims[:, 0] @ (np.ones(n, np.float32) if w is None else w))
        if obj > best_obj:
            best, best_obj = labels[:, 0], obj
    return best


def kmeans_pp_init(x: np.ndarray, k: int, weights: np.ndarray | None, seed: int,
                   sample_per_centroid: int = 16, max_trials: int = 3) -> np.ndarray:
    """Greedy k-means++ seeds for unit vectors (float32 dot products, ||a-b||^2 = 2 - 2 a.b) on a
    subsample. FAISS's random init merges and splits planted clusters (leaf purity ~0.8 vs ~0.95
    on the planted test); sklearn's version upcasts to float64 and was 10x slower here."""
    rng = np.random.default_rng(seed)
    n = len(x)
    m = min(n, sample_per_centroid * k)
    pick = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)
    xs = x[pick]
    w = np.ones(m, np.float32) if weights is None else weights[pick].astype(np.float32)
    trials = min(max_trials, 2 + int(np.log(k)))
    centers = np.empty((k, x.shape[1]), np.float32)
    first = rng.choice(m, p=w / w.sum())
    centers[0] = xs[first]
    dist = np.maximum(2 - 2 * (xs @ xs[first]), 0)
    for c in range(1, k):
        pot = dist * w
        total = float(pot.sum())
        if total <= 0:  # fewer distinct points than k: repeat one (its cluster ends up empty)
            centers[c:] = xs[rng.integers(0, m, k - c)]
            break
        cand = np.searchsorted(np.cumsum(pot), rng.random(trials) * total).clip(0, m - 1)
        d_cand = np.minimum(dist[None, :], np.maximum(2 - 2 * (xs[cand] @ xs.T), 0))
        best = int(np.argmin(d_cand @ w))
        centers[c] = xs[cand[best]]
        dist = d_cand[best]
    return centers


def _members_by_label(labels: np.ndarray) -> list[np.ndarray]:
    """Row indices of each label 0..max, ascending (labels compact: no empty label)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(labels.max() + 2))
    return [order[bounds[g]:bounds[g + 1]] for g in range(len(bounds) - 1)]


def _within_groups(x: np.ndarray, groups: list[np.ndarray], k: int,
                   weights: np.ndarray | None, seed: int, fine, *,
                   threads: bool) -> np.ndarray:
    """Labels from ``fine(x_g, k_g, weights_g, seed_g)`` run inside each group, k shared in
    proportion to group size (at least 1 per group), offsets assigned in group order; with
    ``threads`` the groups run in parallel (each has its own seed, so scheduling does not
    change the result)."""
    n = len(x)

    def run(g: int) -> np.ndarray:
        members = groups[g]
        k_g = max(1, int(round(k * len(members) / n)))
        return fine(x[members], k_g, None if weights is None else weights[members], seed + g + 1)

    if threads:
        # FAISS and numpy release the GIL: one thread per group, all cores busy.
        with single_threaded(), ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
            subs = list(pool.map(run, range(len(groups))))
    else:
        subs = [run(g) for g in range(len(groups))]
    labels = np.empty(n, dtype=np.int64)
    offset = 0
    for members, sub in zip(groups, subs, strict=True):
        labels[members] = sub + offset
        offset += int(sub.max()) + 1
    return labels


def two_stage_kmeans(x: np.ndarray, k: int, *, weights: np.ndarray | None = None, seed: int = 0,
                     direct_max: int = 512, restarts: int = 1) -> np.ndarray:
    """k clusters; above ``direct_max`` first a coarse partition into ~sqrt(k) groups, then k-means
    inside each group with k shared in proportion to group size: cost ~ n*sqrt(k)*d, not n*k*d."""
    n = len(x)
    if k <= direct_max or k >= n:
        return kmeans(x, k, weights=weights, seed=seed, restarts=restarts)
    n_groups = max(2, int(round(math.sqrt(k))))
    coarse = kmeans(x, n_groups, weights=weights, seed=seed)
    # Groups are independent and small: each a single-threaded k-means, in parallel.
    return _within_groups(
        x, _members_by_label(coarse), k, weights, seed,
        lambda xg, kg, wg, sg: kmeans(xg, kg, weights=wg, seed=sg, manage_threads=False),
        threads=True)


def grouped_kmeans(x: np.ndarray, groups: np.ndarray, k: int, *,
                   weights: np.ndarray | None = None, seed: int = 0,
                   direct_max: int = 512) -> np.ndarray:
    """k clusters that never cross ``groups``: k-means inside each group with k shared in
    proportion to group size (at least one cluster per group). The levels between the leaves
    and a top level fixed in advance (``tagtree.structure``) stay nested in it. Groups run one
    after another: a large one is a two-stage k-means with threads of its own."""
    if not len(x):
        return np.zeros(0, dtype=np.int64)
    return _within_groups(
        x, _members_by_label(compact(np.asarray(groups))), k, weights, seed,
        lambda xg, kg, wg, sg: two_stage_kmeans(xg, kg, weights=wg, seed=sg,
                                                direct_max=direct_max),
        threads=False)


def split_oversized(x: np.ndarray, labels: np.ndarray, target: int, max_size: int,
                    seed: int = 0) -> np.ndarray:
    """Split every cluster larger than ``max_size`` into clusters of about ``target`` members.
    Generic short tags ("tasks", "topic", "group") crowd into one giant cluster under k-means;
    a 200-tag leaf grounds everything that touches it to the same place."""
    sizes = np.bincount(labels)
    big = np.flatnonzero(sizes > max_size)
    if not len(big):
        return labels
    labels = labels.copy()
    next_id = int(labels.max()) + 1
    with single_threaded():
        for c in big.tolist():
            members = np.flatnonzero(labels == c)
            sub = kmeans(x[members], math.ceil(len(members) / target), seed=seed + c,
                         manage_threads=False)
            moved = sub > 0  # part 0 keeps the old id
            labels[members[moved]] = sub[moved] - 1 + next_id
            next_id += int(sub.max())
    return compact(labels)
