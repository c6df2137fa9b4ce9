"""LLM refinement of a tree level (tree stage): clusters -> names, descriptions, merges, moves.

The Clio recipe as reconstructed here: (1) the LLM names each cluster and writes a one-line
description from a sample of its members; (2) clusters whose names fold to the same text are
merged; (3) members move to another cluster when their embedding is clearly closer to that
cluster's "name: description" than to their own (needs an embedder; skipped without one).
"""

from __future__ import annotations

import numpy as np

from tagtree.normalize import normalize_tag

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "description": {"type": "string"}},
    "required": ["name", "description"],
    "additionalProperties": False,
}

SYSTEM = ("You organise a taxonomy of knowledge topics. Given the members of one cluster, reply "
          "with a short name (2-5 words) that covers all members, and a one-sentence description. "
          "Name the shared topic, not a single member.")


class LLMRefiner:
    """Parameters: ``chat`` (a ``ChatModel``), ``embedder`` (an ``Embedder`` for reassignment, or
    None), ``max_members`` shown per cluster, ``reassign_margin`` (cosine gain needed to move)."""

    def __init__(self, chat, embedder=None, *, max_members: int = 20,
                 reassign_margin: float = 0.05):
        self.chat = chat
        self.embedder = embedder
        self.max_members = max_members
        self.reassign_margin = reassign_margin
        self.calls_ = 0
        self.merged_ = 0
        self.moved_ = 0

    def name_cluster(self, level: int, members: list[str], fallback: str) -> tuple[str, str]:
        listing = "\n".join(f"- {m}" for m in members)
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Level {level} cluster members:\n{listing}"}]
        self.calls_ += 1
        out = self.chat.complete_json(messages, SCHEMA, name="cluster_name")
        name = " ".join(str(out.get("name", "")).split())[:80]
        return (name or fallback), " ".join(str(out.get("description", "")).split())[:300]

    def refine_level(self, level: int, labels: np.ndarray, member_names: list[str],
                     member_vectors: np.ndarray, names: list[str], descriptions: list[str]):
        """Return (labels, names, descriptions) after naming, merging and reassignment."""
        labels = np.asarray(labels, np.int64).copy()
        k = int(labels.max()) + 1
        new_names, new_desc = [], []
        for c in range(k):
            members = np.flatnonzero(labels == c)
            if len(members) > self.max_members:  # closest to the cluster mean read best
                centre = member_vectors[members].mean(axis=0)
                members = members[np.argsort(-(member_vectors[members] @ centre))]
            shown = [member_names[i] for i in members[:self.max_members]]
            name, desc = self.name_cluster(level, shown, names[c])
            new_names.append(name)
            new_desc.append(desc or descriptions[c])
        labels, new_names, new_desc = self._merge_duplicates(labels, new_names, new_desc)
        if self.embedder is not None and len(new_names) > 1:
            labels, new_names, new_desc = self._reassign(labels, member_vectors, new_names,
                                                         new_desc)
        return labels, new_names, new_desc

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
