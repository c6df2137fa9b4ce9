"""Offline names for tree nodes: the heading of a subject index, not two of a node's members.

Upper-level nodes are named from a *topic vocabulary* (headings such as "Probability", "Organic
chemistry", "Email writing"; tagtree ships one, users can pass their own) matched by embedding: a
heading's score for a node is its cosine similarity to the node's vector plus a distinctiveness
term (how much more it fits this node than the level's nodes on average; a class-based TF-IDF in
embedding space, so "Mathematics" does not name every node of a maths-heavy level). Each heading
names at most one node of a level (the best-scoring pairs first); a node whose best free heading
scores below ``min_score`` keeps the extractive name built from its own member tags.

``sibling_unique`` then guarantees that no two children of one parent share a name, whatever named
them (vocabulary, members or an LLM): a repeated name gets its node's most distinctive member in
parentheses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Vocabulary:
    """Topic headings, their tier (0 = discipline, 1 = field, ...) and unit-length vectors."""

    headings: list[str]
    tiers: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.headings)


def parse_vocabulary(lines: Iterable[str]) -> list[tuple[str, int]]:
    """(heading, tier) pairs of an indented outline: two spaces of indent per tier; blank lines
    and lines starting with ``#`` are skipped; a repeated heading keeps its first tier."""
    out: list[tuple[str, int]] = []
    seen: set[str] = set()
    for line in lines:
        line = line.rstrip("\n")
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key = text.casefold()
        if key in seen:
            continue
        seen.add(key)
        out.append((text, (len(line) - len(line.lstrip(" "))) // 2))
    return out


def make_vocabulary(pairs: list[tuple[str, int]], vectors: np.ndarray) -> Vocabulary:
    v = np.asarray(vectors, dtype=np.float32)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return Vocabulary([h for h, _ in pairs], np.array([t for _, t in pairs], np.int64), v)


def heading_scores(node_vectors: np.ndarray, vocab: Vocabulary, *,
                   distinct_weight: float = 0.5) -> np.ndarray:
    """nodes x headings: cosine + ``distinct_weight`` x (cosine - the level's mean cosine)."""
    x = np.asarray(node_vectors, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = x @ vocab.vectors.T
    if len(x) > 1:
        sims = sims + distinct_weight * (sims - sims.mean(axis=0, keepdims=True))
    return sims


def vocabulary_names(node_vectors: np.ndarray, vocab: Vocabulary, *, min_score: float = 0.35,
                     distinct_weight: float = 0.5,
                     max_tier: int | None = None,
                     tier_penalty: float = 0.0) -> list[str | None]:
    """One heading per node (None where none scores ``min_score``), each heading used at most
    once on the level: greedy over (node, heading) pairs from the best score down. ``max_tier``
    limits the headings to the upper tiers; ``tier_penalty`` per tier down prefers general
    headings where a specific one fits barely better (a top level reads best as disciplines)."""
    n = len(node_vectors)
    if n == 0 or len(vocab) == 0:
        return [None] * n
    scores = heading_scores(node_vectors, vocab, distinct_weight=distinct_weight)
    if tier_penalty:
        scores = scores - tier_penalty * vocab.tiers[None, :]
    if max_tier is not None:
        scores = np.where(vocab.tiers[None, :] <= max_tier, scores, -np.inf)
    names: list[str | None] = [None] * n
    # Each node only ever needs its top n candidates (n nodes can take at most n-1 others).
    top = min(len(vocab), n)
    cand = np.argpartition(-scores, top - 1, axis=1)[:, :top] if top < len(vocab) else \
        np.tile(np.arange(len(vocab)), (n, 1))
    rows = np.repeat(np.arange(n), cand.shape[1])
    cols = cand.ravel()
    vals = scores[rows, cols]
    keep = vals >= min_score
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    used: set[int] = set()
    for i in np.argsort(-vals, kind="stable"):
        r, c = int(rows[i]), int(cols[i])
        if names[r] is None and c not in used:
            names[r] = vocab.headings[c]
            used.add(c)
    return names


def sibling_unique(names: list[str], parent: np.ndarray,
                   alternatives: list[list[str]]) -> list[str]:
    """Names where no two children of one parent are equal (case-insensitive): every repeat after
    the first gets the first of its ``alternatives`` (member phrases, most distinctive first) that
    makes it unique, in parentheses; failing that, a number."""
    out = list(names)
    taken: dict[tuple[int, str], int] = {}
    for i, name in enumerate(names):
        key = (int(parent[i]), name.casefold())
        if key not in taken:
            taken[key] = i
            continue
        for alt in [*alternatives[i], *(str(k) for k in range(2, len(names) + 2))]:
            candidate = f"{name} ({alt})"
            ck = (int(parent[i]), candidate.casefold())
            if alt.casefold() != name.casefold() and ck not in taken:
                out[i] = candidate
                taken[ck] = i
                break
    return out
