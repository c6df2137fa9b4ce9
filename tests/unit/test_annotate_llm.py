"""Annotate client helpers: Retry-After parsing, backoff bounds, the token bucket."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx
import pytest

from tagtree.errors import TagtreeError
from tagtree.io.llm import AsyncLLM, RateLimiter, retry_after_seconds


def response(**headers) -> httpx.Response:
    return httpx.Response(429, headers=headers)


def test_retry_after_forms():
    assert retry_after_seconds(response(**{"retry-after": "3"})) == 3.0
    assert retry_after_seconds(response(**{"retry-after-ms": "250"})) == 0.25
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds(response(**{"retry-after": later})) <= 31
    assert retry_after_seconds(response(**{"retry-after": "soon"})) is None
    assert retry_after_seconds(response()) is None
    assert retry_after_seconds(None) is None


def test_backoff_is_jittered_capped_and_never_below_retry_after():
    llm = AsyncLLM("http://127.0.0.1:9/v1", "m", backoff_base_s=0.5, backoff_max_s=4, seed=1)
    delays = [llm._backoff(attempt, None) for attempt in range(10) for _ in range(20)]
    assert all(0 <= d <= 4 for d in delays) and len(set(delays)) > 100
    assert all(llm._backoff(0, 7.0) >= 7.0 for _ in range(20))


def test_model_name_is_required():
    with pytest.raises(TagtreeError, match="model"):
        AsyncLLM("http://127.0.0.1:9/v1", "")


def test_token_bucket_allows_a_burst_then_paces():
    async def take(limiter, n, amount=1.0):
        start = time.perf_counter()
        for _ in range(n):
            await limiter.acquire(amount)
        return time.perf_counter() - start

    burst = RateLimiter(6000)  # 100/s, bucket of 100
    assert asyncio.run(take(burst, 100)) < 0.05
    paced = RateLimiter(6000)
    assert 0.2 <= asyncio.run(take(paced, 130)) < 0.6  # 30 beyond the burst at 100/s
    big = RateLimiter(6000)  # a request larger than the bucket (100) waits for a full one
    assert 1.0 <= asyncio.run(take(big, 2, amount=110)) < 1.5


def test_stored_endpoint_drops_credentials_and_query():
    from tagtree.sanitize import public_url as _public

    assert _public("https://u:sk-secret@api.example.com:8443/v1?api-key=x") == \
        "https://api.example.com:8443/v1"
    assert _public(None) is None


def test_wordpiece_counter_counts_without_truncating():
    from tagtree.io.annotator import wordpiece_counter

    count = wordpiece_counter()
    assert count("binary search") == 2
    assert count("word " * 3000) == 3000  # no 512-token cap from the embedder's settings
