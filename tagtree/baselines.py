"""Baselines (sampling stage): the same pool and budget -> selections, by the peers' recipes.

Every selector has the TAGS interface: ``fit(problem, k)`` returns self with ``selected_`` (pool
rows in pick order) and ``gains_`` (the score the pick was ranked by). Reconstructions:

- ``random``: uniform without replacement.
- ``instag`` (InsTag, Lu et al. 2023, complexity-first diverse sampling): instances sorted by
  their number of distinct leaves (tags), most first; a pass takes an instance when it adds a
  leaf not yet seen in this pass; passes repeat with the seen set reset until the budget is met.
- ``deita`` (DEITA, Liu et al. 2024, score-first with a representation filter): instances sorted
  by quality q(x), best first; an instance is taken when its cosine similarity to every instance
  already taken is below ``threshold`` (DEITA uses 0.9); the rest fill the budget in score order.
- ``kcenter`` (Sener & Savarese 2018): greedy farthest-point on instance embeddings, starting
  from the best-quality instance; on pools larger than ``max_pool`` it runs on a random
  ``max_pool`` subset (k-center is O(n k d); on 1M x 50K it would take hours).
- ``quality``: the k highest q(x).
- ``kmeans`` (the flat anchor as a selector): spherical k-means of the instance embeddings with k
  = the budget; from each cluster the member closest to its centroid. What a tree-aware method
  has to beat without any tree.
"""

from __future__ import annotations

import numpy as np

from tagtree.errors import TagtreeError
from tagtree.sampling import SelectionProblem, TagsSampler


def _need_embeddings(problem: SelectionProblem, method: str) -> np.ndarray:
    if problem.embeddings is None:
        raise TagtreeError(f"method '{method}' needs instance embeddings; none are stored for "
                           "this pool (the sample stage computes them with the configured "
                           "embedder)")
    return np.asarray(problem.embeddings, dtype=np.float32)


class RandomSampler:
    name = "random"

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def fit(self, problem: SelectionProblem, k: int) -> RandomSampler:
        k = max(0, min(int(k), problem.n))
        rng = np.random.default_rng(self.random_state)
        self.selected_ = rng.choice(problem.n, size=k, replace=False).astype(np.int64)
        self.gains_ = np.full(k, np.nan)
        return self


class QualitySampler:
    name = "quality"

    def fit(self, problem: SelectionProblem, k: int) -> QualitySampler:
        k = max(0, min(int(k), problem.n))
        order = np.lexsort((np.arange(problem.n), -problem.quality))[:k]
        self.selected_, self.gains_ = order.astype(np.int64), problem.quality[order]
        return self


class InstagSampler:
    name = "instag"

    def fit(self, problem: SelectionProblem, k: int) -> InstagSampler:
        k = max(0, min(int(k), problem.n))
        leaves = problem.leaf_dist
        complexity = np.diff(leaves.indptr)
        order = np.lexsort((np.arange(problem.n), -problem.quality, -complexity))
        taken = np.zeros(problem.n, dtype=bool)
        picks: list[int] = []
        indptr, indices = leaves.indptr, leaves.indices
        while len(picks) < k:
            seen = np.zeros(leaves.shape[1], dtype=bool)
            added = 0
            for row in order[~taken[order]]:
                tags = indices[indptr[row]:indptr[row + 1]]
                if len(tags) and not seen[tags].all():
                    seen[tags] = True
                    taken[row] = True
                    picks.append(int(row))
                    added += 1
                    if len(picks) == k:
                        break
            if added == 0:  # nothing adds a tag any more (e.g. ungrounded rows): complexity order
                rest = order[~taken[order]][: k - len(picks)]
                picks.extend(int(r) for r in rest)
                break
        self.selected_ = np.asarray(picks, dtype=np.int64)
        self.gains_ = complexity[self.selected_].astype(np.float64)
        return self


class DeitaSampler:
    name = "deita"

    def __init__(self, threshold: float = 0.9, chunk: int = 1024):
        self.threshold = threshold
        self.chunk = chunk

    def fit(self, problem: SelectionProblem, k: int) -> DeitaSampler:
        k = max(0, min(int(k), problem.n))
        emb = _need_embeddings(problem, self.name)
        order = np.lexsort((np.arange(problem.n), -problem.quality))
        chosen = np.empty((k, emb.shape[1]), dtype=np.float32)
        picks: list[int] = []
        skipped: list[np.ndarray] = []
        for start in range(0, problem.n, self.chunk):
            if len(picks) >= k:
                break
            rows = order[start:start + self.chunk]
            block = emb[rows]
            # Similarity to everything taken so far, in one matrix product per chunk; within the
            # chunk the check is sequential against the rows this chunk has taken.
            to_taken = (block @ chosen[:len(picks)].T).max(axis=1) if picks else \
                np.full(len(rows), -np.inf, dtype=np.float32)
            inner = block @ block.T
            took: list[int] = []
            keep_mask = np.zeros(len(rows), dtype=bool)
            for i in range(len(rows)):
                if len(picks) + len(took) >= k:
                    break
                if to_taken[i] >= self.threshold:
                    continue
                if took and inner[i, took].max() >= self.threshold:
                    continue
                took.append(i)
                keep_mask[i] = True
            chosen[len(picks):len(picks) + len(took)] = block[took]
            picks.extend(int(r) for r in rows[took])
            skipped.append(rows[~keep_mask])
        if len(picks) < k:  # too few distinct instances: fill in score order
            rest = np.concatenate(skipped) if skipped else order
            rest = rest[~np.isin(rest, picks)]
            picks.extend(int(r) for r in rest[: k - len(picks)])
        self.selected_ = np.asarray(picks, dtype=np.int64)
        self.gains_ = problem.quality[self.selected_]
        return self


class KCenterSampler:
    name = "kcenter"

    def __init__(self, max_pool: int = 100_000, random_state: int = 0):
        self.max_pool = max_pool
        self.random_state = random_state

    def fit(self, problem: SelectionProblem, k: int) -> KCenterSampler:
        k = max(0, min(int(k), problem.n))
        emb = _need_embeddings(problem, self.name)
        candidates = np.arange(problem.n)
        if problem.n > max(self.max_pool, k):
            rng = np.random.default_rng(self.random_state)
            candidates = np.sort(rng.choice(problem.n, size=max(self.max_pool, k), replace=False))
        sub = emb[candidates]
        picks, radius = [], []
        if k:
            first = int(np.argmax(problem.quality[candidates]))
            dist = 1.0 - sub @ sub[first]
            picks.append(first)
            radius.append(np.inf)
            dist[first] = -np.inf
            buf = np.empty_like(dist)
            for _ in range(k - 1):
                nxt = int(np.argmax(dist))
                picks.append(nxt)
                radius.append(float(dist[nxt]))
                np.matmul(sub, sub[nxt], out=buf)  # cosine distance = 1 - similarity
                np.subtract(1.0, buf, out=buf)
                np.minimum(dist, buf, out=dist)
                dist[nxt] = -np.inf
        self.selected_ = candidates[np.asarray(picks, dtype=np.int64)]
        self.gains_ = np.asarray(radius)
        return self


class KMeansSampler:
    name = "kmeans"

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def fit(self, problem: SelectionProblem, k: int) -> KMeansSampler:
        from tagtree.tree import group_means, kmeans

        k = max(0, min(int(k), problem.n))
        emb = _need_embeddings(problem, self.name)
        if k == 0:
            self.selected_, self.gains_ = np.zeros(0, np.int64), np.zeros(0)
            return self
        labels = kmeans(emb, k, seed=self.random_state, restarts=3)
        centroids = group_means(emb, labels, int(labels.max()) + 1)
        sim = np.einsum("ij,ij->i", emb, centroids[labels])
        order = np.lexsort((np.arange(problem.n), -sim, labels))  # best member first per cluster
        first = np.ones(len(order), dtype=bool)
        first[1:] = labels[order][1:] != labels[order][:-1]
        picks = order[first]
        if len(picks) < k:  # fewer distinct clusters than k: the next-closest members fill up
            rest = order[~first]
            picks = np.concatenate([picks, rest[np.argsort(-sim[rest], kind="stable")]])
        self.selected_ = picks[:k].astype(np.int64)
        self.gains_ = sim[self.selected_]
        return self


def make_selector(method: str, **params):
    """A selector by name; ``params`` are the TAGS knobs (for 'tags') or the baseline's own."""
    if method == "tags":
        return TagsSampler(**params)
    if method == "random":
        return RandomSampler(random_state=params.get("random_state", 0))
    if method == "instag":
        return InstagSampler()
    if method == "deita":
        return DeitaSampler(threshold=params.get("threshold", 0.9))
    if method == "kcenter":
        return KCenterSampler(max_pool=params.get("max_pool", 100_000),
                              random_state=params.get("random_state", 0))
    if method == "quality":
        return QualitySampler()
    if method == "kmeans":
        return KMeansSampler(random_state=params.get("random_state", 0))
    raise TagtreeError(f"unknown method {method!r}; choose tags, random, instag, deita, kcenter, "
                       "quality or kmeans")
