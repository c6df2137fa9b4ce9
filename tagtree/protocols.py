"""The small interfaces external services sit behind. Each has a real implementation in
``tagtree.io`` and a fast fake for tests and demos; the core only ever sees these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Texts -> L2-normalised float32 vectors of shape (len(texts), dim)."""

    fingerprint: str  # model + version: embeddings are cached under it
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class ChatModel(Protocol):
    """One structured chat call: returns the parsed JSON object the model produced.

    Used by tree refinement (naming clusters) and the quality judge; the annotate stage has its
    own concurrent client because it sends millions of requests.
    """

    fingerprint: str

    def complete_json(self, messages: list[dict[str, str]], schema: dict[str, Any],
                      *, name: str = "result", temperature: float | None = None,
                      seed: int | None = None) -> dict[str, Any]:
        """``temperature``/``seed`` override the model's own for one call (a retry that
        differs); raises ``tagtree.errors.EndpointError`` when the endpoint fails."""
        ...
