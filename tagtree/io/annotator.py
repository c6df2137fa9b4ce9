"""Annotate stage (I/O): instances -> annotations, written as results arrive so a kill loses little.

``annotate_store`` pages through instances lacking an ok annotation for the tagger's fingerprint,
runs the tagger concurrently and upserts each result (ok, or failed with its reason) in small
groups: a killed run keeps everything flushed (at most ``flush_seconds`` or ``flush_rows`` of
answered work and the requests in flight are lost), and a re-run requests only what is missing
or failed. ``LLMTagger`` is the OpenAI-compatible tagger; ``make_tagger`` picks one from config.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from tagtree.annotation import (
    CRITIQUE_SCHEMA,
    FAILED,
    OK,
    TagError,
    Tagger,
    TagInput,
    TagResult,
    TagStats,
    approx_tokens,
    clean_tags,
    load_prompt,
    parse_tags,
    tagger_fingerprint,
    tags_schema,
    truncate,
)
from tagtree.errors import TagtreeError
from tagtree.io.llm import AsyncLLM, RequestFailed
from tagtree.sanitize import public_url


class LLMTagger:
    """Tags from a chat model: the tag prompt, structured output, tolerant parsing, validation,
    and optionally the act-critic loop (a critic reviews the tags, the tagger revises them, up to
    ``critic_rounds`` times; stops early when the critic accepts)."""

    def __init__(self, llm: AsyncLLM, *, prompt_version: str = "v1", min_tags: int = 2,
                 max_tags: int = 12, critic_rounds: int = 0, max_input_tokens: int = 1024,
                 content_retries: int = 1, count_tokens: Callable[[str], int] = approx_tokens,
                 token_counter: str = "chars/4"):
        self.llm = llm
        self.prompt = load_prompt("tag", prompt_version)
        self.critic = load_prompt("critic", prompt_version) if critic_rounds else None
        self.revise = load_prompt("revise", prompt_version) if critic_rounds else None
        self.min_tags, self.max_tags = min_tags, max_tags
        self.critic_rounds = critic_rounds
        self.max_input_tokens = max_input_tokens
        self.content_retries = content_retries  # an empty/garbled answer is asked again this often
        self.count_tokens = count_tokens
        self.token_counter = token_counter  # the name of count_tokens, for the fingerprint
        self.schema = tags_schema(min_tags, max_tags)
        self.fingerprint = tagger_fingerprint("llm", llm.model, self.params())

    def params(self) -> dict[str, Any]:
        prompts = [p.sha for p in (self.prompt, self.critic, self.revise) if p]
        return {"prompt": self.prompt.version, "prompt_sha": prompts, "min_tags": self.min_tags,
                "max_tags": self.max_tags, "critic_rounds": self.critic_rounds,
                "max_input_tokens": self.max_input_tokens, "token_counter": self.token_counter,
                "temperature": self.llm.temperature,
                "max_tokens": self.llm.max_tokens}

    def describe(self) -> dict[str, Any]:
        return {"kind": "llm", "model": self.llm.model, "base_url": public_url(self.llm.base_url),
                **self.params()}

    def _values(self, item: TagInput) -> dict[str, Any]:
        system = f"System prompt:\n{item.system}\n\n" if item.system.strip() else ""
        return {"instruction": item.instruction, "response": item.response or "(none)",
                "system": system, "min_tags": self.min_tags, "max_tags": self.max_tags}

    async def _chat(self, messages, spent: TagResult, **kw):
        """One request, its attempts counted in ``spent`` even when it fails (a failed
        instance's requests were missing from the attempts column: 577 seen, 439 recorded)."""
        try:
            out = await self.llm.chat(messages, **kw)
        except RequestFailed as exc:
            spent.attempts += exc.attempts
            raise
        spent.attempts += out.attempts
        return out

    async def _ask_tags(self, messages, spent: TagResult) -> list[str]:
        last: Exception | None = None
        for _ in range(self.content_retries + 1):
            out = await self._chat(messages, spent, schema=self.schema, name="tags")
            spent.prompt_tokens += out.prompt_tokens
            spent.completion_tokens += out.completion_tokens
            try:
                return clean_tags(parse_tags(out.content), self.min_tags, self.max_tags)
            except TagError as exc:
                last = exc
        raise last  # type: ignore[misc]

    async def tag_one(self, item: TagInput) -> TagResult:
        result = TagResult(item.instance_id, OK, attempts=0)
        short, _ = truncate(item, self.max_input_tokens, self.count_tokens)
        values = self._values(short)
        try:
            tags = await self._ask_tags(self.prompt.render(**values), result)
            for _ in range(self.critic_rounds):
                review = await self._chat(
                    self.critic.render(**values, tags=", ".join(tags)), result,
                    schema=CRITIQUE_SCHEMA, name="critique")
                result.prompt_tokens += review.prompt_tokens
                result.completion_tokens += review.completion_tokens
                try:
                    verdict = _loads_object(review.content)
                except TagError:
                    break  # an unreadable critique changes nothing: keep the tags
                if verdict.get("ok") is True or not str(verdict.get("critique", "")).strip():
                    break
                tags = await self._ask_tags(self.revise.render(
                    **values, tags=", ".join(tags), critique=verdict["critique"]), result)
            result.tags = tags
        except (RequestFailed, TagError) as exc:
            result.status, result.error = FAILED, str(exc)
        result.attempts = max(result.attempts, 1)
        return result

    async def aclose(self) -> None:
        await self.llm.close()

    async def tag_stream(self, items: Iterable[TagInput]) -> AsyncIterator[TagResult]:
        """Keeps about 2x the client's concurrency scheduled, so the semaphore never starves.
        Finished tasks report through a queue: O(1) per result (``asyncio.wait`` over the whole
        window would cost O(window) per result, which shows at concurrency 128)."""
        it = iter(items)
        done: asyncio.Queue[asyncio.Task] = asyncio.Queue()
        running: set[asyncio.Task] = set()

        def finished(task: asyncio.Task) -> None:
            running.discard(task)
            done.put_nowait(task)

        def start(item: TagInput) -> None:
            task = asyncio.ensure_future(self.tag_one(item))
            running.add(task)
            task.add_done_callback(finished)

        first = list(itertools.islice(it, max(2, 2 * self.llm.concurrency)))
        if first:
            await self.llm.probe()  # a dead endpoint is found now, not after every retry
        try:
            for item in first:
                start(item)
            while running or not done.empty():
                task = await done.get()
                item = next(it, None)
                if item is not None:
                    start(item)
                yield task.result()  # TagtreeError (fatal) propagates from here
        finally:
            # Cancel what is in flight and collect every unreported outcome: a task left with an
            # unretrieved exception is reported (and finalized) at some later garbage collection.
            left = list(running)
            while not done.empty():
                left.append(done.get_nowait())
            for task in left:
                task.cancel()
            if left:
                await asyncio.gather(*left, return_exceptions=True)


def wordpiece_counter() -> Callable[[str], int]:
    """Token counts from the tokenizer shipped for the embedder (WordPiece, close to BPE counts
    for English); the ~4-characters rule when it cannot be loaded."""
    try:
        from tokenizers import Tokenizer

        from tagtree.io.embedder import TOKENIZER

        tok = Tokenizer.from_file(str(TOKENIZER))
        tok.no_truncation()
        tok.no_padding()
    except Exception:  # noqa: BLE001 - any failure here only costs precision
        return approx_tokens
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def _loads_object(content: str | None) -> dict:
    import json

    from tagtree.annotation import _json_candidates, _loads

    if content:
        for candidate in _json_candidates(content):
            value = _loads(candidate)
            if isinstance(value, dict):
                return value
        with contextlib.suppress(ValueError, TypeError, RecursionError):
            return dict(json.loads(content))
    raise TagError("unreadable critique")


@dataclass
class AnnotateSummary:
    tagger: str
    instances: int
    cached: int  # already ok before this run
    requested: int
    ok: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    failures: dict[str, int]
    seconds: float

    @classmethod
    def of(cls, tagger: str, instances: int, stats: TagStats, seconds: float) -> AnnotateSummary:
        """The summary of a run that counted its results in ``stats``."""
        return cls(tagger=tagger, instances=instances, cached=stats.cached,
                   requested=stats.requested, ok=stats.ok, failed=stats.failed,
                   prompt_tokens=stats.prompt_tokens, completion_tokens=stats.completion_tokens,
                   failures=stats.failures, seconds=round(seconds, 3))

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        rate = self.requested / self.seconds if self.seconds else 0.0
        return (f"annotated {self.requested:,} instances ({self.ok:,} ok, {self.failed:,} failed) "
                f"in {self.seconds:.1f}s ({rate:.1f}/s); {self.cached:,} already tagged; "
                f"tokens {self.prompt_tokens:,} in / {self.completion_tokens:,} out")


def pending_inputs(store, tagger: str, page: int, limit: int | None = None
                   ) -> Iterator[TagInput]:
    """Instances lacking an ok annotation by ``tagger``, read ``page`` at a time."""
    after, given = "", 0
    while limit is None or given < limit:
        size = page if limit is None else min(page, limit - given)
        rows = store.pending_page(tagger, after, size)
        if not rows:
            return
        for row in rows:
            yield TagInput(*row)
        given += len(rows)
        after = rows[-1][0]


def annotate_store(store, tagger: Tagger, *, page: int = 2000, limit: int | None = None,
                   flush_rows: int = 64, flush_seconds: float = 0.5,
                   progress: Callable[[int, int], None] | None = None) -> AnnotateSummary:
    """Annotate every instance lacking an ok annotation by ``tagger``; see the module docstring.

    ``progress(done, total)`` is called after each flush. ``limit`` caps this run's requests.
    """
    started = time.perf_counter()
    store.register_tagger(tagger.fingerprint, tagger.describe())
    counts = store.annotation_counts(tagger.fingerprint)
    total = counts["pending"] if limit is None else min(limit, counts["pending"])
    stats = TagStats(pending=counts["pending"], cached=counts["ok"])
    buffer: list[TagResult] = []
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal last_flush
        store.write_annotations(tagger.fingerprint, buffer)
        # The single-pass keyphrase tagger computed each instance's vector: stored, the tree's
        # context and the baselines need no second embedder pass over the instance texts.
        vectors = tagger.take_instance_vectors() if hasattr(tagger, "take_instance_vectors") \
            else None
        if vectors:
            store.write_instance_embeddings(tagger.embedder.fingerprint, *vectors)
        buffer.clear()
        last_flush = time.monotonic()
        if progress:
            progress(stats.requested, total)

    async def flush_while_waiting() -> None:
        # Results arrive only when a request ends: while every request in flight waits out a
        # Retry-After or a slow server, what has already arrived is written anyway.
        while True:
            await asyncio.sleep(flush_seconds)
            if buffer and time.monotonic() - last_flush >= flush_seconds:
                flush()

    async def consume() -> None:
        ticker = asyncio.ensure_future(flush_while_waiting())
        try:
            items = pending_inputs(store, tagger.fingerprint, page, limit)
            async for result in tagger.tag_stream(items):
                buffer.append(result)
                stats.add(result)
                if len(buffer) >= flush_rows or time.monotonic() - last_flush >= flush_seconds:
                    flush()
        finally:
            ticker.cancel()
            if hasattr(tagger, "aclose"):  # connections belong to this event loop
                await tagger.aclose()

    try:
        asyncio.run(consume())
    finally:
        flush()  # whatever arrived before an error or Ctrl-C is kept
    return AnnotateSummary.of(tagger.fingerprint, counts["instances"], stats,
                              time.perf_counter() - started)


def _llm_tagger(cfg, base_url: str | None, model: str, *, concurrency: int | None = None,
                timeout_s: float | None = None, local: bool = False) -> LLMTagger:
    """``local``: the in-process CPU model, which gets the ``annotate.local_*`` caps (fewer tags,
    completion and input tokens: each costs CPU time; see docs/annotate.md)."""
    a, llm = cfg.annotate, cfg.llm
    max_tags, max_tokens, max_input = a.max_tags, llm.max_tokens, a.max_input_tokens
    if local:
        max_tags = max(a.min_tags, min(max_tags, a.local_max_tags))
        max_tokens = min(max_tokens, a.local_max_tokens)
        max_input = min(max_input, a.local_max_input_tokens)
    client = AsyncLLM(base_url, model, api_key_env=llm.api_key_env,
                      timeout_s=timeout_s or llm.timeout_s, max_retries=llm.max_retries,
                      max_retry_after_s=llm.max_retry_after_s,
                      breaker_failures=llm.breaker_failures,
                      concurrency=concurrency or a.concurrency,
                      requests_per_minute=a.requests_per_minute,
                      tokens_per_minute=a.tokens_per_minute, temperature=llm.temperature,
                      max_tokens=max_tokens)
    count = wordpiece_counter()
    return LLMTagger(client, prompt_version=a.prompt_version, min_tags=a.min_tags,
                     max_tags=max_tags, critic_rounds=a.critic_rounds,
                     max_input_tokens=max_input, count_tokens=count,
                     token_counter="chars/4" if count is approx_tokens else "minilm-wordpiece")


def uses_llm(cfg) -> bool:
    """An endpoint set means the LLM tagger on it; otherwise ``annotate.tagger`` decides."""
    return bool(cfg.llm.base_url) or cfg.annotate.tagger == "llm"


def tagger_fingerprint_for(cfg) -> str:
    """The fingerprint ``open_tagger(cfg)`` will tag under, without starting any server."""
    if uses_llm(cfg):
        from tagtree.io.local_llm import MODEL_NAME

        if cfg.llm.base_url:
            return _llm_tagger(cfg, cfg.llm.base_url, cfg.llm.model or "").fingerprint
        return _llm_tagger(cfg, None, MODEL_NAME, local=True).fingerprint
    return keyphrase_tagger(cfg).fingerprint


def keyphrase_tagger(cfg, embedder=None):
    """The offline keyphrase tagger ``cfg`` configures (on ``embedder`` if given, else on the
    configured one)."""
    from tagtree.io.vocabulary import builtin_headings
    from tagtree.keyphrase import KeyphraseTagger

    hand_on = True
    if cfg.annotate.phrase_embedder == "static":
        # Only the tagger's phrase and document scores: the tags it writes are embedded for
        # the tree by [embed]'s model as before, and so are the instance vectors (WordLlama's
        # would be stored under their own fingerprint and never read, unless [embed] is
        # WordLlama too).
        from tagtree.io.embedder import StaticEmbedder

        embedder = StaticEmbedder(max_tokens=cfg.embed.max_tokens)
        hand_on = cfg.embed.backend == "static"
    elif embedder is None:
        from tagtree.io.embedder import make_embedder

        embedder = make_embedder(cfg)
    return KeyphraseTagger(embedder, mode=cfg.annotate.phrase_vectors,
                           min_tags=cfg.annotate.min_tags, max_tags=cfg.annotate.max_tags,
                           doc_chars=cfg.annotate.doc_chars, hand_on=hand_on,
                           topics=builtin_headings() if cfg.annotate.topic_fallback else ())


@contextlib.contextmanager
def open_tagger(cfg, *, embedder=None) -> Iterator[Tagger]:
    """The tagger the configuration asks for (``cfg``: a ``tagtree.config.Config``); with no
    endpoint and ``annotate.tagger = "llm"``, a local model server runs for the duration."""
    if not uses_llm(cfg):
        yield keyphrase_tagger(cfg, embedder)
        return
    if cfg.llm.base_url:
        if not cfg.llm.model:
            raise TagtreeError("llm.base_url is set but no model: pass --llm-model or set "
                               "TAGTREE_LLM_MODEL")
        yield _llm_tagger(cfg, cfg.llm.base_url, cfg.llm.model)
        return
    from tagtree.io.local_llm import LocalLLMServer

    a = cfg.annotate
    with LocalLLMServer(threads=a.local_threads or None, poll=a.local_poll,
                        parallel=a.local_parallel, batch=a.local_batch,
                        decode_threads=a.local_decode_threads or None,
                        spin=a.local_spin) as server:
        # More requests than server slots only queue inside the server, where they time out:
        # match the slots, and allow for a slow shared CPU (nothing is billed locally).
        yield _llm_tagger(cfg, server.base_url, server.model,
                          concurrency=min(cfg.annotate.concurrency, server.parallel),
                          timeout_s=max(cfg.llm.timeout_s, 600.0), local=True)
