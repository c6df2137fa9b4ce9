"""Annotate stage (I/O): async client for any OpenAI-compatible chat endpoint, built for volume.

A bounded semaphore caps requests in flight; token buckets enforce client-side requests/min and
tokens/min; 429/5xx/timeouts/connection errors/garbled bodies are retried with exponential
backoff and full jitter, honouring ``Retry-After`` up to a cap; ``probe()`` checks the endpoint
answers at all before a long run, and a circuit breaker stops the run (TagtreeError, naming the
URL without credentials) after ``breaker_failures`` connection failures or timeouts in a row;
``response_format`` json_schema is sent and dropped for good if the server rejects it (the caller
then parses tolerantly). The API key is read from the environment when the client is built and
never logged or returned.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson

from tagtree.errors import TagtreeError, retryable_status
from tagtree.sanitize import public_url, scrub_text


@dataclass(slots=True)
class ChatResult:
    content: str | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int


class RequestFailed(Exception):
    """Retries exhausted or a non-retryable answer for this one request; str() is the reason,
    ``attempts`` the requests it took (they are counted against the instance)."""

    def __init__(self, reason: str, attempts: int = 1):
        super().__init__(reason)
        self.attempts = attempts


class RateLimiter:
    """Token bucket: ``per_minute`` units refill continuously, bursts up to one second's worth."""

    def __init__(self, per_minute: float, *, burst_seconds: float = 1.0):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self._lock: asyncio.Lock | None = None

    async def acquire(self, amount: float = 1.0) -> None:
        self._lock = self._lock or asyncio.Lock()
        need = min(amount, self.capacity)  # a request bigger than the bucket waits for a full one
        async with self._lock:  # FIFO: waiters are served in order
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.level >= need:
                    self.level -= amount
                    return
                await asyncio.sleep((need - self.level) / self.rate)


def retry_after_seconds(response: httpx.Response | None) -> float | None:
    """Seconds the server asked to wait: ``retry-after-ms``, ``Retry-After`` (seconds or date)."""
    if response is None:
        return None
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# Connections per httpx client. httpcore's pool matches queued requests against connections in
# O(requests x connections) on every request and response, checking each idle socket: one pool of
# 128 connections capped a loopback run at ~53 req/s. Pools of 4 (measured on 2 shared cores):
# zero latency, concurrency 16: 490 req/s vs 270 with pools of 16; 100 ms latency: 90% of ideal at
# concurrency 32, 546 req/s at 128.
POOL_SHARD = 4
# Answers that doom every request of the run: stop instead of failing a million rows one by one.
_FATAL_STATUS = {401: "authentication failed", 403: "permission denied",
                 404: "model or endpoint not found"}


class AsyncLLM:
    """One endpoint + model. Create and use it inside one event loop."""

    def __init__(self, base_url: str | None, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 60.0, max_retries: int = 6, concurrency: int = 16,
                 requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 temperature: float = 0.0, max_tokens: int = 256, structured: bool = True,
                 backoff_base_s: float = 0.5, backoff_max_s: float = 30.0, seed: int | None = None,
                 max_retry_after_s: float = 60.0, breaker_failures: int = 8):
        if not model:
            raise TagtreeError("no model name: set --llm-model or TAGTREE_LLM_MODEL")
        self.base_url = base_url
        self.public_url = public_url(base_url) or "api.openai.com"  # for messages: no secrets
        self.model = model
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.structured = structured
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.breaker_failures = breaker_failures
        self._streak = 0  # connection failures/timeouts in a row, across all requests
        self._answered = False  # the endpoint has sent some HTTP answer
        self.concurrency = concurrency
        self._rpm_rate, self._tpm_rate = requests_per_minute, tokens_per_minute
        self._random = random.Random(seed)
        self._api_key_env = api_key_env
        self._timeout_s = timeout_s
        self._clients: list[openai.AsyncOpenAI] = []
        self._inflight: list[int] = []

    def _open(self) -> None:
        """Clients, semaphore and limiters bind to the running event loop: made on first use and
        dropped by ``close()``, so one AsyncLLM can serve several ``asyncio.run`` calls. Requests
        go to the least busy of ceil(concurrency / POOL_SHARD) clients (see POOL_SHARD)."""
        if not self._clients:
            # Local servers usually need no key; the client insists on one: send a placeholder.
            key = os.environ.get(self._api_key_env) or "unused"
            shards = -(-self.concurrency // POOL_SHARD)
            per = -(-self.concurrency // shards)
            for _ in range(shards):
                http = httpx.AsyncClient(
                    limits=httpx.Limits(max_connections=per, max_keepalive_connections=per),
                    timeout=httpx.Timeout(self._timeout_s, connect=min(self._timeout_s, 10.0)))
                self._clients.append(openai.AsyncOpenAI(
                    base_url=self.base_url, api_key=key, max_retries=0, timeout=self._timeout_s,
                    http_client=http))
            self._inflight = [0] * shards
            self._semaphore = asyncio.Semaphore(self.concurrency)
            self._rpm = RateLimiter(self._rpm_rate) if self._rpm_rate else None
            self._tpm = RateLimiter(self._tpm_rate) if self._tpm_rate else None

    async def close(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            await client.close()

    async def __aenter__(self) -> AsyncLLM:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _backoff(self, attempt: int, server_wait: float | None) -> float:
        # Full jitter spreads a burst of retries; the server's Retry-After is a floor, capped at
        # max_retry_after_s: one "Retry-After: 100000" would otherwise stall the run for 28 h.
        delay = self._random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))
        return max(delay, min(server_wait or 0.0, self.max_retry_after_s))

    def _unreachable(self, reason: str) -> TagtreeError:
        return TagtreeError(
            f"LLM endpoint {self.public_url} is unreachable: {reason}. Check llm.base_url "
            "(--llm-base-url) and that the server is up; finished work is kept, re-run to resume")

    async def probe(self) -> None:
        """One cheap ``GET /models`` before a long run: raises TagtreeError when the endpoint
        refuses or drops the connection, does not answer within the request timeout, or says the
        key is bad. Any other answer (a 404 from a server without /models included) passes."""
        self._open()
        try:
            await self._clients[0].get("/models", cast_to=httpx.Response,
                                       options={"timeout": self._timeout_s})
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise TagtreeError(f"LLM endpoint {self.public_url}: "
                                   f"{_FATAL_STATUS[exc.status_code]} (HTTP {exc.status_code}); "
                                   f"check the key in ${self._api_key_env}") from None
        except openai.APITimeoutError:
            raise self._unreachable(f"no answer within {self._timeout_s:g} s") from None
        except openai.APIConnectionError as exc:
            raise self._unreachable(_connect_reason(exc)) from None
        # /models answering does not set _answered: chat requests may still hang.

    def _breaker(self, counted: bool, reason: str = "") -> None:
        """Count connection failures and timeouts in a row; any HTTP answer resets the count.
        Trips at ``breaker_failures``, or -- while the endpoint has never answered -- as soon
        as every request in flight failed (at least 2): a dead endpoint is known after one
        request timeout (two with concurrency 1), not after every instance's retries."""
        if not counted:
            self._streak, self._answered = 0, True
            return
        self._streak += 1
        limit = self.breaker_failures if self._answered else min(
            self.breaker_failures, max(2, self.concurrency))
        if self.breaker_failures and self._streak >= limit:
            raise self._unreachable(f"{self._streak} requests in a row failed ({reason})")

    async def chat(self, messages: list[dict[str, str]], *, schema: dict | None = None,
                   name: str = "tags") -> ChatResult:
        """One chat completion with retries. Raises RequestFailed (this request is lost) or
        TagtreeError (the endpoint is unusable for every request)."""
        self._open()
        estimate = sum(len(m["content"]) for m in messages) // 4 + self.max_tokens
        reason = "no attempt"
        for attempt in range(self.max_retries + 1):
            if self._rpm:
                await self._rpm.acquire()
            if self._tpm:
                await self._tpm.acquire(estimate)
            wait: float | None = None
            try:
                async with self._semaphore:
                    # Least busy pool: never more than its share of connections in use.
                    i = min(range(len(self._clients)), key=self._inflight.__getitem__)
                    self._inflight[i] += 1
                    try:
                        content, usage = await self._create(
                            self._clients[i], messages, schema, name)
                    finally:
                        self._inflight[i] -= 1
                self._breaker(False)
                return ChatResult(content, usage.get("prompt_tokens") or 0,
                                  usage.get("completion_tokens") or 0, attempt + 1)
            except openai.APIStatusError as exc:
                self._breaker(False)
                status = exc.status_code
                if status in _FATAL_STATUS:
                    raise TagtreeError(f"LLM endpoint {self.public_url}: "
                                       f"{_FATAL_STATUS[status]} (HTTP {status}) for model "
                                       f"{self.model!r}") from None
                if status == 400 and schema is not None and self.structured \
                        and "response_format" in str(exc.message).lower():
                    self.structured = False  # not supported here: parse free text from now on
                    continue
                if not retryable_status(status):
                    raise RequestFailed(f"http {status}: {_short(exc.message)}",
                                        attempt + 1) from None
                reason = f"http {status}: {_short(exc.message)}"
                wait = retry_after_seconds(exc.response)
            except openai.APITimeoutError:
                reason = "timeout"
                self._breaker(True, f"timeout after {self._timeout_s:g} s")
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc
                reason = f"connection error: {_connect_reason(exc)}"
                # Could not connect at all (refused, DNS, unroutable): counts for the breaker.
                # A connection dropped mid-answer proves the server is there: it does not.
                connect = isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout))
                self._breaker(connect, reason)
            except (ValueError, openai.APIResponseValidationError) as exc:  # garbled body
                reason = f"malformed response: {_short(str(exc))}"
            if attempt < self.max_retries:
                await asyncio.sleep(self._backoff(attempt, wait))
        raise RequestFailed(f"{reason} (after {self.max_retries + 1} attempts)",
                            self.max_retries + 1)

    async def _create(self, client, messages, schema, name) -> tuple[str | None, dict]:
        """POST /chat/completions through the SDK's request layer (auth, base URL, headers,
        typed status errors) without its per-request type transform of the arguments and
        pydantic model of the answer: together ~60% of the client's CPU per request, measured
        against a zero-latency loopback server. Returns (content, usage)."""
        body: dict[str, Any] = {"model": self.model, "messages": messages,
                                "temperature": self.temperature, "max_tokens": self.max_tokens}
        if schema is not None and self.structured:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": True}}
        resp = await client.post("/chat/completions", cast_to=httpx.Response, body=body)
        try:
            data = orjson.loads(resp.content)
            choices = data.get("choices") or []
            content = choices[0]["message"].get("content") if choices else None
            usage = data.get("usage") or {}
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"not a chat completion: {_short(resp.text)}") from exc
        if (content is not None and not isinstance(content, str)) or not isinstance(usage, dict):
            raise ValueError(f"not a chat completion: {_short(resp.text)}")
        return content, usage


def _connect_reason(exc: BaseException) -> str:
    """The OS's words for a failed connection ("connection refused", "name or service not
    known"), found down the exception chain; httpx's own message ("All connection attempts
    failed") says less."""
    seen, cur = set(), exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and (cur.errno or cur.strerror):
            text = os.strerror(cur.errno) if cur.errno else cur.strerror
            return _short(text.lower())
        cur = cur.__cause__ or cur.__context__
    return _short(str(exc.__cause__ or exc))


def _short(text: str, limit: int = 160) -> str:
    """A one-line, bounded reason with any credentials in URLs scrubbed (it gets stored)."""
    text = scrub_text(" ".join(str(text).split()))
    try:  # some servers put a JSON error object in the message
        text = json.loads(text).get("error", {}).get("message", text)
    except (ValueError, AttributeError, RecursionError):
        pass
    return text[:limit]
