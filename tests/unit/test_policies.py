"""Shared task policies: which faults count as transient, and the cache policy's key parts."""

from __future__ import annotations

import httpx
import openai
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tagtree.errors import TagtreeError
from tasks.policies import cached, is_transient, stage_cache_policy


def _status_error(code: int) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(code, request=request)
    return openai.APIStatusError(f"HTTP {code}", response=response, body=None)


def _client_error(code: str, http: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "x"},
                        "ResponseMetadata": {"HTTPStatusCode": http}}, "GetObject")


@pytest.mark.parametrize("exc, transient", [
    (_status_error(500), True), (_status_error(503), True), (_status_error(429), True),
    (_status_error(400), False), (_status_error(401), False), (_status_error(404), False),
    (openai.APIConnectionError(request=httpx.Request("GET", "http://127.0.0.1")), True),
    (httpx.ConnectError("refused"), True),
    (ConnectionResetError(), True), (TimeoutError(), True),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
    (_client_error("SlowDown", 503), True), (_client_error("NoSuchKey", 404), False),
    (_client_error("AccessDenied", 403), False),
    (TagtreeError("bad input"), False), (ValueError("bug"), False), (KeyError("x"), False),
])
def test_is_transient(exc, transient):
    assert is_transient(exc) is transient


def test_wrapped_transient_cause_is_seen():
    try:
        try:
            raise ConnectionResetError("peer reset")
        except ConnectionResetError as inner:
            raise RuntimeError("batch failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def test_cache_policy_keys_change_with_version_and_inputs():
    from prefect import task

    @task
    def stage(x: int) -> int:
        return x

    class Ctx:  # TASK_SOURCE only reads task_ctx.task
        task = stage

    def key(version: str, x: int) -> str:
        return stage_cache_policy(version).compute_key(Ctx(), {"x": x}, {})  # type: ignore[arg-type]

    assert key("1", 1) == key("1", 1)
    assert key("1", 1) != key("2", 1)
    assert key("1", 1) != key("1", 2)
    assert cached("1")["persist_result"] is True
