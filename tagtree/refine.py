"""LLM refinement of a tree level (tree stage): clusters -> names, descriptions, merges, moves.

The Clio recipe as reconstructed here: (1) the LLM names each cluster and writes a one-line
description from a sample of its members; (2) clusters whose names fold to the same text are
merged; (3) members move to another cluster when their embedding is clearly closer to that
cluster's "name: description" than to their own (needs an embedder; skipped without one).

Refinement never breaks a build: a cluster the model cannot name keeps its offline name and is
counted. Answers are cached per cluster content, so a rebuild asks only about changed clusters.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import orjson

from tagtree.errors import EndpointError, TagtreeError
from tagtree.normalize import normalize_tag

PROMPT_VERSION = "name-v2"

# Bounded output: llama.cpp turns maxLength into its grammar, so a small model cannot loop inside
# the description until the token cap (SmolLM2 did, and every retry at temperature 0 repeated it).
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 2, "maxLength": 48},
                   "description": {"type": "string", "maxLength": 160}},
    "required": ["name", "description"],
    "additionalProperties": False,
}

# Short and example-free: a 135M model follows this, and copies any example it is shown.
SYSTEM = ("You name topics in a subject index. Reply with JSON: \"name\" is a heading of 1 to 4 "
          "words for what all the items share, \"description\" is one short sentence.")

# The second try changes something: sampling, a seed, and half the items.
ATTEMPTS = ({"temperature": 0.0, "share": 1.0}, {"temperature": 0.7, "seed": 7, "share": 0.5})
MAX_WORDS = 6
GIVE_UP_AFTER = 5  # consecutive clusters the endpoint failed: the rest keep offline names


def cluster_key(fingerprint: str, level: int, members: list[str]) -> str:
    """Cache key of one naming request: the model, the prompt and the members shown (in order)."""
    h = hashlib.sha256()
    h.update(orjson.dumps([PROMPT_VERSION, fingerprint, level, members]))
    return h.hexdigest()[:32]


def clean_name(raw: object) -> str | None:
    """A usable heading from the model's ``name`` or None: non-empty, a few words, not a list."""
    name = " ".join(str(raw or "").replace("\n", " ").split()).strip(" .,:;-\"'")
    if len(name) < 2 or len(name.split()) > MAX_WORDS or not any(c.isalpha() for c in name):
        return None
    return name[:48]


class LLMRefiner:
    """Parameters: ``chat`` (a ``ChatModel``), ``embedder`` (an ``Embedder`` for reassignment, or
    None), ``max_members`` shown per cluster, ``reassign_margin`` (cosine gain needed to move),
    ``cache`` (``get(key) -> (name, description) | None`` and ``put(key, name, description)``:
    a cluster whose shown members did not change is never asked again).

    A cluster the model cannot name (endpoint errors, no JSON, an unusable name after a second,
    different try) keeps its offline name; ``failed_`` counts them. With an ``embedder``, an
    answer that fits the members worse than the offline name (``fit_margin``) is dropped too
    (``rejected_``). After ``GIVE_UP_AFTER``
    consecutive endpoint failures the remaining clusters are not asked (``gave_up_``)."""

    def __init__(self, chat, embedder=None, *, max_members: int = 12,
                 reassign_margin: float = 0.05, cache=None, fit_margin: float = 0.05):
        self.chat = chat
        self.embedder = embedder
        self.max_members = max_members
        self.reassign_margin = reassign_margin
        self.fit_margin = fit_margin
        self.cache = cache
        self.clusters_ = 0  # clusters to name
        self.calls_ = 0  # clusters sent to the model (a retry is not another cluster)
        self.requests_ = 0  # chat requests made
        self.cached_ = 0
        self.named_ = 0
        self.failed_ = 0
        self.rejected_ = 0  # answers that fit the members worse than the offline name
        self.gave_up_ = False
        self.merged_ = 0
        self.moved_ = 0
        self._endpoint_failures = 0

    def stats(self) -> dict:
        return {"named": self.named_, "cached": self.cached_, "failed": self.failed_,
                "rejected": self.rejected_,
                "requests": self.requests_, "merged": self.merged_, "moved": self.moved_,
                "gave_up": self.gave_up_}

    def _ask(self, level: int, members: list[str], attempt: dict) -> tuple[str, str] | None:
        shown = members[:max(2, math.ceil(len(members) * attempt["share"]))]
        listing = "\n".join(f"- {m}" for m in shown)
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Items:\n{listing}"}]
        self.requests_ += 1
        options = {k: v for k, v in attempt.items() if k != "share"}
        try:
            out = self.chat.complete_json(messages, SCHEMA, name="cluster_name", **options)
        except TagtreeError as exc:
            if isinstance(exc, EndpointError):
                self._endpoint_failures += 1
            return None
        self._endpoint_failures = 0
        name = clean_name(out.get("name"))
        if name is None:
            return None
        return name, " ".join(str(out.get("description", "")).split())[:300]

    def name_cluster(self, level: int, members: list[str], fallback: str) -> tuple[str, str]:
        """(name, description): cached, else asked (twice at most), else the fallback name and
        an empty description."""
        self.clusters_ += 1
        key = cluster_key(getattr(self.chat, "fingerprint", "?"), level, members)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.cached_ += 1
            return hit
        if self.gave_up_ or self._endpoint_failures >= GIVE_UP_AFTER:
            self.gave_up_ = True
            self.failed_ += 1
            return fallback, ""
        self.calls_ += 1
        for attempt in ATTEMPTS:
            got = self._ask(level, members, attempt)
            if got is not None:
                self.named_ += 1
                if self.cache is not None:
                    self.cache.put(key, *got)
                return got
            if self._endpoint_failures >= GIVE_UP_AFTER:
                break
        self.failed_ += 1
        return fallback, ""

    def refine_level(self, level: int, labels: np.ndarray, member_names: list[str],
                     member_vectors: np.ndarray, names: list[str], descriptions: list[str]):
        """Return (labels, names, descriptions) after naming, merging and reassignment."""
        labels = np.asarray(labels, np.int64).copy()
        k = int(labels.max()) + 1
        new_names, new_desc, shown_all = [], [], []
        for c in range(k):
            members = np.flatnonzero(labels == c)
            if len(members) > self.max_members:  # closest to the cluster mean read best
                centre = member_vectors[members].mean(axis=0)
                members = members[np.argsort(-(member_vectors[members] @ centre), kind="stable")]
            shown = [member_names[i] for i in members[:self.max_members]]
            shown_all.append(shown)
            name, desc = self.name_cluster(level, shown, names[c])
            new_names.append(name)
            new_desc.append(desc or descriptions[c])
        if self.embedder is not None:
            new_names, new_desc = self._keep_fitting(shown_all, new_names, new_desc, names,
                                                     descriptions)
        labels, new_names, new_desc = self._merge_duplicates(labels, new_names, new_desc)
        if self.embedder is not None and len(new_names) > 1:
            labels, new_names, new_desc = self._reassign(labels, member_vectors, new_names,
                                                         new_desc)
        return labels, new_names, new_desc

    def _keep_fitting(self, shown, names, descs, offline, offline_descs):
        """An LLM name is kept only when it fits the cluster's members (cosine to their mean
        string embedding) at least about as well as the offline name: a 135M model answers
        "Geralt of Raven" for a cluster of fantasy-story tags, and a heading beats that."""
        changed = [c for c in range(len(names)) if names[c] != offline[c]]
        if not changed:
            return names, descs
        texts = [names[c] for c in changed] + [offline[c] for c in changed]
        flat = [m for c in changed for m in shown[c]]
        vecs = self.embedder.embed(texts + flat)
        name_v, off_v, mem_v = (vecs[:len(changed)], vecs[len(changed):2 * len(changed)],
                                vecs[2 * len(changed):])
        out_n, out_d, start = list(names), list(descs), 0
        for i, c in enumerate(changed):
            centre = mem_v[start:start + len(shown[c])].mean(axis=0)
            start += len(shown[c])
            if float(name_v[i] @ centre) < float(off_v[i] @ centre) - self.fit_margin:
                out_n[c], out_d[c] = offline[c], offline_descs[c]
                self.rejected_ += 1
        return out_n, out_d

    def _merge_duplicates(self, labels, names, descs):
        first: dict[str, int] = {}
        target = np.arange(len(names))
        for c, name in enumerate(names):
            key = normalize_tag(name)
            if key in first:
                target[c] = first[key]
                self.merged_ += 1
            else:
                first[key] = c
        return self._relabel(target[labels], names, descs)

    def _reassign(self, labels, vectors, names, descs):
        label_vecs = self.embedder.embed([f"{n}: {d}" for n, d in zip(names, descs, strict=True)])
        sims = vectors @ label_vecs.T
        own = sims[np.arange(len(labels)), labels]
        best = sims.argmax(axis=1)
        move = (best != labels) & (sims.max(axis=1) - own > self.reassign_margin)
        new = np.where(move, best, labels)
        self.moved_ += int(move.sum())
        return self._relabel(new, names, descs)

    @staticmethod
    def _relabel(labels, names, descs):
        """Drop clusters left empty and renumber 0..k-1 keeping names aligned."""
        used, inverse = np.unique(labels, return_inverse=True)
        return (inverse.astype(np.int64), [names[i] for i in used], [descs[i] for i in used])
