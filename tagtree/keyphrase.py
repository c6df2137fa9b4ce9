"""Annotate stage (pure part): offline keyphrase tagger, instances -> annotations without an LLM.

A reconstruction standing in for the paper's LLM tagger where no LLM is available (KeyBERT-style):
candidate phrases are runs of 1-3 content words between stopwords and punctuation; each is
embedded with the same ``Embedder`` as the tree and scored by cosine similarity to the whole
instance, with a bonus for appearing in the instruction (the tags should describe what the
instruction needs); Maximal Marginal Relevance then picks diverse tags, 2-12 per instance.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import numpy as np

from tagtree.annotation import FAILED, OK, TagInput, TagResult, normalize_tag, tagger_fingerprint
from tagtree.protocols import Embedder

_TOKEN = re.compile(r"[a-z][a-z0-9+#]*(?:['._-][a-z0-9+#]+)*|[.,;:!?()\[\]{}\"\n=<>/|*]")
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing done down during each either else etc even
ever every few for from further get gets getting give given go goes had has have having he her
here hers him his how however i if in into is it its itself just let like likely made make makes
many may me might more most much must my need needs no nor not now of off on once one only or other
our out over own per please rather really said same say says see she should show so some such
take tell than that the their them then there these they thing things this those through thus
to too under until up upon us use used uses using very via want was way we well were what when
where whether which while who whom whose why will with within without would yes yet you your
write explain describe provide create generate find answer question following given based
help answer response example examples something someone new good best different make sure below
""".split())


def candidates(text: str, max_words: int = 3) -> list[str]:
    """Runs of up to ``max_words`` content words: every n-gram inside each run between
    stopwords/punctuation, normalized, in order of first appearance."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        for n in range(1, max_words + 1):
            for i in range(len(run) - n + 1):
                out.append(" ".join(run[i:i + n]))
        run.clear()

    for token in _TOKEN.findall(text.lower()):
        if token in STOPWORDS or not token[0].isalpha() or len(token) < 2:
            flush()
        else:
            run.append(token)
            if len(run) > 2 * max_words:  # very long runs (lists of names) are split
                flush()
    flush()
    return [normalize_tag(c) for c in out if len(c) >= 3]


class KeyphraseTagger:
    """Tags from the instance's own words, ranked against its embedding (no LLM, no network).

    Parameters: ``embedder`` (any ``tagtree.protocols.Embedder``), ``min_tags``/``max_tags``,
    ``max_candidates`` (cheap pre-filter by frequency and position before embedding),
    ``diversity`` (MMR weight of novelty, 0 = pure relevance), ``instruction_bonus`` (added to
    the similarity of phrases found in the instruction), ``chunk`` (instances per embed call).
    """

    def __init__(self, embedder: Embedder, *, min_tags: int = 2, max_tags: int = 12,
                 max_candidates: int = 30, diversity: float = 0.4,
                 instruction_bonus: float = 0.05, max_chars: int = 4000, doc_chars: int = 1000,
                 chunk: int = 64, cache_size: int = 200_000):
        self.embedder = embedder
        self.min_tags = min_tags
        self.max_tags = max_tags
        self.max_candidates = max_candidates
        self.diversity = diversity
        self.instruction_bonus = instruction_bonus
        self.max_chars = max_chars
        self.doc_chars = doc_chars
        self.chunk = chunk
        self.cache_size = cache_size
        self._phrase_vecs: dict[str, np.ndarray] = {}  # phrases recur across instances
        self.fingerprint = tagger_fingerprint("keyphrase", embedder.fingerprint, self.params())

    def params(self) -> dict[str, Any]:
        return {"version": 1, "min_tags": self.min_tags, "max_tags": self.max_tags,
                "max_candidates": self.max_candidates, "diversity": self.diversity,
                "instruction_bonus": self.instruction_bonus, "max_chars": self.max_chars,
                "doc_chars": self.doc_chars}

    def describe(self) -> dict[str, Any]:
        return {"kind": "keyphrase", "embedder": self.embedder.fingerprint, **self.params()}

    def n_tags(self, n_candidates: int) -> int:
        """More distinct phrases, more tags: sqrt growth, within [min_tags, max_tags]."""
        return int(np.clip(round(n_candidates ** 0.5), self.min_tags, self.max_tags))

    def _shortlist(self, item: TagInput) -> tuple[list[str], set[str]]:
        ins = candidates(item.instruction[: self.max_chars])
        res = candidates(item.response[: self.max_chars])
        counts = Counter(ins + ins + res)  # instruction phrases count double
        first = {c: i for i, c in reversed(list(enumerate(ins + res)))}
        ranked = sorted(counts, key=lambda c: (-counts[c] * (1 + 0.3 * c.count(" ")), first[c]))
        return ranked[: self.max_candidates], set(ins)

    def tag_many(self, items: Sequence[TagInput]) -> list[TagResult]:
        shortlists = [self._shortlist(it) for it in items]
        if not items:
            return []
        cache = self._phrase_vecs
        if len(cache) > self.cache_size:
            cache.clear()
        new = sorted({p for cands, _ in shortlists for p in cands if p not in cache})
        # The instance is represented by its beginning: the instruction and the response's head.
        docs = [(it.instruction + "\n" + it.response)[: self.doc_chars] for it in items]
        vectors = self.embedder.embed(docs + new)
        doc_vecs = vectors[: len(docs)]
        cache.update(zip(new, vectors[len(docs):], strict=True))
        results = []
        for item, (cands, in_instruction), doc in zip(items, shortlists, doc_vecs, strict=True):
            if len(cands) < self.min_tags:
                results.append(TagResult(item.instance_id, FAILED, error=(
                    f"too few candidate phrases: {len(cands)} < {self.min_tags}"), attempts=1))
                continue
            vecs = np.stack([cache[c] for c in cands])
            relevance = vecs @ doc + self.instruction_bonus * np.array(
                [c in in_instruction for c in cands], dtype=np.float32)
            picked = self._mmr(relevance, vecs, self.n_tags(len(cands)))
            results.append(TagResult(item.instance_id, OK, tags=[cands[i] for i in picked]))
        return results

    def _mmr(self, relevance: np.ndarray, vecs: np.ndarray, k: int) -> list[int]:
        """Maximal Marginal Relevance: relevant to the instance, unlike the tags already chosen."""
        chosen = [int(np.argmax(relevance))]
        while len(chosen) < min(k, len(relevance)):
            redundancy = (vecs @ vecs[chosen].T).max(axis=1)
            score = (1 - self.diversity) * relevance - self.diversity * redundancy
            score[chosen] = -np.inf
            chosen.append(int(np.argmax(score)))
        return chosen

    async def tag_stream(self, items: Iterable[TagInput]) -> AsyncIterator[TagResult]:
        chunk: list[TagInput] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= self.chunk:
                for result in self.tag_many(chunk):
                    yield result
                chunk = []
        for result in self.tag_many(chunk):
            yield result
