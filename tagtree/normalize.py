"""Tag normalization, every step of it: a tagger's reply -> the raw tags stored in annotations
(``tidy_tag``), and (tree stage) annotations' raw tags -> tags (frequencies) + tag_aliases.

``tidy_tag`` runs when a reply is read (its output is in every stored annotation, so changing
it changes annotations: bump the prompt/tagger version with it). Then the tree stage's three
steps, each keeping the raw -> canonical map: (1) text folding (``normalize_tag``: Unicode NFKC,
case, whitespace, separators, surrounding punctuation), which also de-duplicates exactly; (2)
optional rare-tag filter; (3) near-duplicate merge by embedding cosine similarity, each tag
merging into a more frequent canonical tag, so merges never chain.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

import numpy as np

from tagtree.sanitize import strip_controls

_TIDY_EDGES = " \t\"'`.,;:!?*#-•()[]{}"
_SEPARATORS = re.compile(r"[\s_\-\u2010-\u2015/|]+")
# Punctuation stripped from the ends only: "c++", "c#" and "node.js" keep their inner characters.
_EDGE_PUNCT = " \t\"'`.,;:!?()[]{}<>*~"
MAX_TAG_CHARS = 80


def tidy_tag(tag: str) -> str:
    """A tagger's tag as stored: lower-case, single spaces, no surrounding quotes/punctuation/
    bullets, no terminal escape sequences or control/bidi characters (tags are printed and
    shown everywhere). Length bounds are the reply validator's (``annotation.clean_tags``)."""
    tag = re.sub(r"\s+", " ", strip_controls(tag).replace("_", " ")).strip().lower()
    return tag.strip(_TIDY_EDGES)


def normalize_tag(raw: str) -> str:
    """Fold one raw tag to its canonical text form; '' means "not a usable tag"."""
    text = unicodedata.normalize("NFKC", str(raw)).casefold()
    text = _SEPARATORS.sub(" ", text).strip(_EDGE_PUNCT)
    text = _SEPARATORS.sub(" ", text).strip()
    if not any(ch.isalpha() for ch in text):  # "1.1.1.1", "10", "--" name no concept
        return ""
    return text[:MAX_TAG_CHARS].rstrip()


def fold_counts(raw_counts: Iterable[tuple[str, int]]
                ) -> tuple[dict[str, int], dict[str, str]]:
    """(raw tag, count) pairs -> ({canonical: frequency}, {raw: canonical}); unusable dropped."""
    freq: Counter[str] = Counter()
    alias: dict[str, str] = {}
    for raw, count in raw_counts:
        tag = normalize_tag(raw)
        if tag:
            freq[tag] += int(count)
            alias[raw] = tag
    return dict(freq), alias


def filter_rare(freq: dict[str, int], alias: dict[str, str], min_freq: int):
    """Drop canonical tags seen fewer than ``min_freq`` times (and the aliases pointing at them)."""
    if min_freq <= 1:
        return freq, alias
    kept = {t: n for t, n in freq.items() if n >= min_freq}
    return kept, {r: t for r, t in alias.items() if t in kept}


def order_by_frequency(freq: dict[str, int]) -> list[str]:
    """Most frequent first, ties alphabetical: the order in which merging sees the tags."""
    return sorted(freq, key=lambda t: (-freq[t], t))


def near_duplicate_map(tags: list[str], freqs: np.ndarray, vectors: np.ndarray,
                       threshold: float, *, neighbours: int = 8) -> np.ndarray:
    """For tags sorted most frequent first, the index of the canonical tag each one merges into.

    A tag merges into its most similar *earlier* (more frequent) tag that is itself canonical and
    at least ``threshold`` cosine-similar; otherwise it stays canonical. Neighbours come from a
    FAISS index (exact up to 200K tags, IVF beyond), never an n x n matrix.
    """
    n = len(tags)
    target = np.arange(n)
    if n < 2 or threshold >= 1:
        return target
    if len(freqs) != n or len(vectors) != n:
        raise ValueError("tags, freqs and vectors must align")
    sims, idx = knn(vectors, min(neighbours + 1, n))
    for i in range(n):
        for s, j in zip(sims[i], idx[i], strict=True):
            if j < 0 or j >= i or s < threshold:
                continue  # only earlier (more frequent) tags can absorb this one
            if target[j] == j:
                target[i] = j
                break
    return target


def knn(vectors: np.ndarray, k: int, *, exact_limit: int = 200_000, seed: int = 0):
    """Inner-product k nearest neighbours of every row among all rows (sorted, best first)."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if n <= exact_limit:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(4 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        index.train(x[rng.choice(n, min(n, nlist * 64), replace=False)])
        index.nprobe = 8
    index.add(x)
    sims, idx = index.search(x, k)
    return sims, idx


def merge_near_duplicates(freq: dict[str, int], alias: dict[str, str], ordered: list[str],
                          vectors: np.ndarray, threshold: float):
    """Apply ``near_duplicate_map``: merged tags add their frequency to the canonical one and
    their aliases follow. ``ordered`` is ``order_by_frequency(freq)``, aligned with ``vectors``.
    Returns (freq, alias, kept_indices into ``ordered``)."""
    counts = np.array([freq[t] for t in ordered], dtype=np.int64)
    target = near_duplicate_map(ordered, counts, vectors, threshold)
    merged_freq: Counter[str] = Counter()
    for i in range(len(ordered)):
        merged_freq[ordered[target[i]]] += counts[i]
    canon = {t: ordered[target[i]] for i, t in enumerate(ordered)}
    new_alias = {r: canon[t] for r, t in alias.items()}
    kept = np.flatnonzero(target == np.arange(len(ordered)))
    return dict(merged_freq), new_alias, kept
