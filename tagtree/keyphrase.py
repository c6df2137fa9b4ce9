"""Annotate stage (pure part): offline keyphrase tagger, instances -> annotations without an LLM.

A reconstruction standing in for the paper's LLM tagger where no LLM is available (KeyBERT-style):
candidate phrases are runs of 1-3 content words between stopwords and punctuation, scored by
cosine similarity to the whole instance, with a bonus for appearing in the instruction (the tags
should describe what the instruction needs); Maximal Marginal Relevance then picks diverse tags,
2-12 per instance (a text with a single candidate phrase gets that one; numbers and symbols
with none, like "-4 + (-3) =", the topic headings nearest to them; any other text without one
fails, and says why).

Two ways to get the phrase vectors (``mode``):
- ``"context"`` (version 2, opt-in: ``annotate.phrase_vectors = "context"``): one embedder
  pass over the instance text. The instance
  vector is the pooled output (the very vector the tree's context and the baselines use, so it is
  handed on to be stored: ``take_instance_vectors``); a phrase's first score is the similarity
  of the mean of the token states of its occurrences in that pass. Only the ``rerank x n_tags``
  best (~10, not the 30 of version 1) are embedded on their own, cached across instances, for
  the final ranking (token states alone favoured generic words: "describes", "body").
- ``"separate"`` (version 1, the default: version 2's MT-Bench figures were lower): every
  shortlisted phrase is embedded on its own (cached across
  instances) and compared with the embedding of the instance's first ``doc_chars`` characters
  (1,000), which is the instance vector for rows no longer than that (handed on); with
  ``doc_chars=0`` the document is the whole instance text as the embedder reads it, so every
  row's vector is handed on. Needs only the ``Embedder`` protocol, so it is also what an
  embedder without token states (the OpenAI backend) gets.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import numpy as np

from tagtree.annotation import FAILED, OK, TagInput, TagResult, normalize_tag, tagger_fingerprint
from tagtree.protocols import Embedder

_DIGIT = re.compile(r"\d")


def other_script(text: str) -> bool:
    """Letters beyond Latin and Greek (Cyrillic, CJK, Arabic, ...): words this tagger cannot
    take apart, and the shipped MiniLM does not read either."""
    return any(ch.isalpha() and ord(ch) > 0x3FF for ch in text)


def symbolic(text: str) -> bool:
    """Numbers and symbols with no word to take: "-4 + (-3) =", "If 3^(x - 3) + 10 = 19,
    then x =" (digits, and no letters of another script)."""
    return bool(_DIGIT.search(text)) and not other_script(text)

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
    stopwords/punctuation, normalized, in order of first appearance (the version-1 tagger's
    candidates, kept as they were so its output does not change)."""
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


def _lower_same_length(text: str) -> str:
    """``text.lower()`` with every character's position kept (a few characters lower to two)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def candidate_spans(text: str, max_words: int = 3) -> list[tuple[str, int, int]]:
    """``candidates`` with each occurrence's character span ``(phrase, start, end)`` in ``text``."""
    out: list[tuple[str, int, int]] = []
    run: list[tuple[str, int, int]] = []

    def flush() -> None:
        for n in range(1, max_words + 1):
            for i in range(len(run) - n + 1):
                out.append((" ".join(t for t, _, _ in run[i:i + n]), run[i][1], run[i + n - 1][2]))
        run.clear()

    for m in _TOKEN.finditer(_lower_same_length(text)):
        token = m.group()
        if token in STOPWORDS or not token[0].isalpha() or len(token) < 2:
            flush()
        else:
            run.append((token, m.start(), m.end()))
            if len(run) > 2 * max_words:  # very long runs (lists of names) are split
                flush()
    flush()
    return [(normalize_tag(c), a, b) for c, a, b in out if len(c) >= 3]


MODES = ("context", "separate")


class KeyphraseTagger:
    """Tags from the instance's own words, ranked against its embedding (no LLM, no network).

    Parameters: ``embedder`` (any ``tagtree.protocols.Embedder``; ``mode="context"`` needs one
    with ``encode`` returning token states, like ``LocalEmbedder``, and falls back to
    ``"separate"`` otherwise), ``mode`` (see the module docstring), ``min_tags``/``max_tags``,
    ``max_candidates`` (cheap pre-filter by frequency and position), ``diversity`` (MMR weight
    of novelty, 0 = pure relevance), ``instruction_bonus`` (added to the similarity of phrases
    found in the instruction), ``chunk`` (instances per embed call), ``rerank`` (``"context"``:
    the ``rerank x n_tags`` candidates best by token states are embedded on their own for the
    final ranking; 0: token states only, fastest), ``doc_chars`` (``"separate"``: 0 scores
    against the whole instance text, N against its first N characters), ``hand_on`` (keep
    the instance vectors for ``take_instance_vectors``; False when this embedder is not the
    one the tree and the baselines use, whose vectors nobody would read).
    """

    def __init__(self, embedder: Embedder, *, mode: str = "separate", min_tags: int = 2,
                 max_tags: int = 12, max_candidates: int = 30, diversity: float = 0.4,
                 instruction_bonus: float = 0.05, max_chars: int = 4000, doc_chars: int = 1000,
                 chunk: int = 256, cache_size: int = 200_000, rerank: int = 2,
                 hand_on: bool = True, topics: Sequence[str] = ()):
        if mode not in MODES:
            raise ValueError(f"keyphrase mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.embedder = embedder
        self.mode = mode if mode == "separate" or hasattr(embedder, "encode") else "separate"
        self.min_tags = min_tags
        self.max_tags = max_tags
        self.max_candidates = max_candidates
        self.diversity = diversity
        self.instruction_bonus = instruction_bonus
        self.max_chars = max_chars
        self.doc_chars = doc_chars
        self.chunk = chunk
        self.cache_size = cache_size
        self.rerank = rerank
        self.hand_on = hand_on
        # Headings for the rows with no phrase of their own (``_topic_tags``). Not in the
        # fingerprint: only rows that would fail change, and failed rows are tagged again on
        # every run, so every cached ok annotation is still this tagger's.
        self.topics = list(topics)
        self._topic_vecs: np.ndarray | None = None
        self._phrase_vecs: dict[str, np.ndarray] = {}  # phrases recur across instances
        self._instance_vecs: list[tuple[str, np.ndarray]] = []
        self.fingerprint = tagger_fingerprint("keyphrase", embedder.fingerprint, self.params())

    def params(self) -> dict[str, Any]:
        if self.mode == "separate":  # exactly version 1's, so its cached annotations still count
            return {"version": 1, "min_tags": self.min_tags, "max_tags": self.max_tags,
                    "max_candidates": self.max_candidates, "diversity": self.diversity,
                    "instruction_bonus": self.instruction_bonus, "max_chars": self.max_chars,
                    "doc_chars": self.doc_chars}
        return {"version": 2, "mode": self.mode, "min_tags": self.min_tags,
                "max_tags": self.max_tags, "max_candidates": self.max_candidates,
                "diversity": self.diversity, "instruction_bonus": self.instruction_bonus,
                "max_chars": self.max_chars, "rerank": self.rerank}

    def describe(self) -> dict[str, Any]:
        return {"kind": "keyphrase", "embedder": self.embedder.fingerprint, **self.params()}

    def n_tags(self, n_candidates: int) -> int:
        """More distinct phrases, more tags: sqrt growth, within [min_tags, max_tags]."""
        return int(np.clip(round(n_candidates ** 0.5), self.min_tags, self.max_tags))

    def take_instance_vectors(self) -> tuple[list[str], np.ndarray] | None:
        """The instance vectors computed since the last call (every instance, except in
        ``"separate"`` with ``doc_chars`` set those longer than that): the same
        ``embedder.embed`` of ``instruction + "\\n" + response`` the tree context and the
        baselines ask for, so the caller can store them instead of embedding every text again."""
        if not self._instance_vecs:
            return None
        ids = [i for i, _ in self._instance_vecs]
        vecs = np.stack([v for _, v in self._instance_vecs])
        self._instance_vecs = []
        return ids, vecs

    def _shortlist(self, item: TagInput) -> tuple[list[str], set[str]]:
        ins = candidates(item.instruction[: self.max_chars])
        res = candidates(item.response[: self.max_chars])
        counts = Counter(ins + ins + res)  # instruction phrases count double
        first = {c: i for i, c in reversed(list(enumerate(ins + res)))}
        ranked = sorted(counts, key=lambda c: (-counts[c] * (1 + 0.3 * c.count(" ")), first[c]))
        return ranked[: self.max_candidates], set(ins)

    def tag_many(self, items: Sequence[TagInput]) -> list[TagResult]:
        if not items:
            return []
        if self.mode == "context":
            return self._tag_in_context(items)
        shortlists = [self._shortlist(it) for it in items]
        cache = self._phrase_vecs
        if len(cache) > self.cache_size:
            cache.clear()
        new = sorted({p for cands, _ in shortlists for p in cands if p not in cache})
        if self.doc_chars:
            # The instance is represented by its beginning: the instruction and the response's
            # head. Where that is the whole text (most rows), its vector is the instance vector
            # the tree's context and the baselines ask for (that text stripped; whitespace
            # never reaches the word pieces): handed on to be stored.
            texts = [it.instruction + "\n" + it.response for it in items]
            docs = [t[: self.doc_chars] for t in texts]
            whole = [len(t) <= self.doc_chars for t in texts]
        else:
            # The very text ensure_embeddings embeds (the embedder cuts it at its own limit), so
            # every document vector is the instance vector the tree's context and the
            # baselines ask for: handed on to be stored, and no second embedder pass reads any
            # text (with the 1,000-character default the tree stage embeds the longer rows
            # again: 115 s of a 20,000-row run).
            docs = [f"{it.instruction}\n{it.response}".strip() for it in items]
            whole = [True] * len(docs)
        vectors = self.embedder.embed(docs + new)
        doc_vecs = vectors[: len(docs)]
        cache.update(zip(new, vectors[len(docs):], strict=True))
        if self.hand_on:
            self._instance_vecs.extend((it.instance_id, v) for it, w, v
                                       in zip(items, whole, doc_vecs, strict=True) if w)
        results = []
        for item, (cands, in_instruction), doc in zip(items, shortlists, doc_vecs, strict=True):
            results.append(self._pick(item, cands, in_instruction, doc,
                                      lambda cs: np.stack([cache[c] for c in cs])))
        return results

    def _pick(self, item: TagInput, cands: list[str], in_instruction: set[str], doc: np.ndarray,
              vectors, n: int | None = None) -> TagResult:
        if not cands:
            text = f"{item.instruction}\n{item.response}"
            if self.topics and symbolic(text):
                return self._topic_tags(item, doc)
            why = ("no English word: this tagger takes phrases of English text; tag other "
                   "languages with an LLM endpoint" if other_script(text)
                   else "no content word of 3 or more letters")
            return TagResult(item.instance_id, FAILED,
                             error=f"too few candidate phrases: 0 ({why})", attempts=1)
        # Fewer candidates than min_tags (a short question, "Find the quotient of -40 / (-8)."):
        # the tags the text has. Failing them left 4% of the offline benchmark's rows, short
        # arithmetic among them, out of the tree and of every selection. Only rows that failed
        # before change, and failed rows are tagged again on every run, so every cached ok
        # annotation is still this tagger's: the fingerprint stays.
        vecs = vectors(cands)
        relevance = vecs @ doc + self.instruction_bonus * np.array(
            [c in in_instruction for c in cands], dtype=np.float32)
        picked = self._mmr(relevance, vecs, n or self.n_tags(len(cands)))
        return TagResult(item.instance_id, OK, tags=[cands[i] for i in picked])

    def _topic_tags(self, item: TagInput, doc: np.ndarray) -> TagResult:
        """The ``min_tags`` topic headings nearest to a symbolic row's text ("-4 + (-3) =" ->
        algebra, arithmetic). Without them such rows failed: 12 of the MMLU half's 6,384
        questions, all arithmetic and algebra, were never grounded, so no selection could pick
        one. The nearest, not a diverse pick: headings are few, and near ones agree."""
        if self._topic_vecs is None:
            vecs = np.asarray(self.embedder.embed(self.topics), dtype=np.float32)
            self._topic_vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True),
                                                 1e-12)
        relevance = self._topic_vecs @ np.asarray(doc, dtype=np.float32)
        picked = np.argsort(-relevance, kind="stable")[: self.min_tags]
        return TagResult(item.instance_id, OK,
                         tags=[normalize_tag(self.topics[i]) for i in picked])

    # -- version 2: one pass, phrase vectors from the instance's own token states ---------------
    def _tag_in_context(self, items: Sequence[TagInput]) -> list[TagResult]:
        cap = getattr(self.embedder, "max_tokens", 256) * 16
        texts, whole = [], []
        for it in items:
            # The text ensure_embeddings embeds; a huge row is cut first (its vector is then not
            # that text's, so it is not handed on to be stored).
            small = len(it.instruction) + len(it.response) <= 4 * cap
            text = (f"{it.instruction}\n{it.response}" if small else
                    f"{it.instruction[:cap]}\n{it.response[:cap]}").strip()
            texts.append(text[:cap])
            whole.append(small)
        results: list[TagResult | None] = [None] * len(items)
        shortlists: dict[int, tuple] = {}
        for idx, pooled, states, encodings in self.embedder.encode(texts):
            for j, i in enumerate(idx):
                item = items[i]
                ranked = self._rank_in_context(item, texts[i], pooled[j], states[j],
                                               encodings[j])
                if isinstance(ranked, TagResult):
                    results[i] = ranked
                else:
                    shortlists[i] = ranked
                if whole[i] and self.hand_on:
                    self._instance_vecs.append((item.instance_id, pooled[j]))
        if self.rerank and shortlists:
            # The final ranking on the phrases' own embeddings (cached across instances), for
            # the few best candidates only: token states alone favoured generic words.
            cache = self._phrase_vecs
            if len(cache) > self.cache_size:
                cache.clear()
            new = sorted({c for cands, *_ in shortlists.values() for c in cands if c not in cache})
            if new:
                cache.update(zip(new, self.embedder.embed(new), strict=True))
            for i, (cands, in_instruction, doc, n, _) in shortlists.items():
                results[i] = self._pick(items[i], cands, in_instruction, doc,
                                        lambda cs: np.stack([cache[c] for c in cs]), n)
        else:
            for i, (cands, in_instruction, doc, n, vectors) in shortlists.items():
                results[i] = self._pick(items[i], cands, in_instruction, doc, vectors, n)
        return results  # type: ignore[return-value]

    def _rank_in_context(self, item: TagInput, text: str, doc: np.ndarray, states: np.ndarray,
                         encoding) -> TagResult:
        offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
        real = (np.asarray(encoding.special_tokens_mask) == 0) & \
            (np.asarray(encoding.attention_mask) == 1)
        pos = np.flatnonzero(real)  # token positions of the text (no [CLS]/[SEP]/padding)
        starts = offsets[pos, 0]
        window = int(offsets[pos, 1].max()) if len(pos) else 0  # characters the model saw
        ins_end = len(item.instruction) - (len(item.instruction) - len(item.instruction.lstrip()))
        spans = candidate_spans(text[: self.max_chars * 2])
        counts: Counter[str] = Counter()
        first: dict[str, int] = {}
        seen: dict[str, list[tuple[int, int]]] = {}
        in_instruction: set[str] = set()
        for k, (phrase, a, b) in enumerate(spans):
            inside = a < ins_end
            counts[phrase] += 2 if inside else 1  # instruction phrases count double
            first.setdefault(phrase, k)
            if inside:
                in_instruction.add(phrase)
            if b <= window:
                lo, hi = np.searchsorted(starts, (a, b))
                if hi > lo:
                    seen.setdefault(phrase, []).append((lo, hi))
        ranked = sorted(seen, key=lambda c: (-counts[c] * (1 + 0.3 * c.count(" ")), first[c]))
        cands = ranked[: self.max_candidates]
        if not cands:
            return self._pick(item, cands, in_instruction, doc, None)  # fails: nothing to rank
        n = self.n_tags(len(cands))
        # Range sums of the text's token states by prefix sums: O(tokens + occurrences).
        prefix = np.zeros((len(pos) + 1, states.shape[1]), dtype=np.float32)
        np.cumsum(states[pos], axis=0, out=prefix[1:])

        def vectors(cs: list[str]) -> np.ndarray:
            out = np.stack([sum(prefix[hi] - prefix[lo] for lo, hi in seen[c]) for c in cs])
            return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

        if self.rerank:  # cheap scoring first: the shortlist for the final ranking
            vecs = vectors(cands)
            relevance = vecs @ doc + self.instruction_bonus * np.array(
                [c in in_instruction for c in cands], dtype=np.float32)
            keep = np.argsort(-relevance, kind="stable")[: self.rerank * n]
            cands = [cands[k] for k in sorted(keep)]
        return cands, in_instruction, doc, n, vectors

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
