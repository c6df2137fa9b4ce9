"""The shared task policies at work in real flow runs: caching across runs, transient retries,
permanent faults failing fast without losing finished work (loopback OpenAI-compatible server)."""

from __future__ import annotations

import json

import openai
import pytest
from prefect import flow, task

from tagtree.errors import TagtreeError
from tasks.policies import LLM_TAG, TRANSIENT_RETRIES, cached
from tests.flows.conftest import task_states
from tests.support.openai_server import default_responder

pytestmark = pytest.mark.usefixtures("prefect_harness")

FAST_RETRIES = TRANSIENT_RETRIES | {"retry_delay_seconds": 0, "retry_jitter_factor": None}
CALLS: list[str] = []


def _tag(base_url: str, text: str) -> list[str]:
    CALLS.append(text)
    client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)
    reply = client.chat.completions.create(
        model="fake-tagger", messages=[{"role": "user", "content": text}]
    )
    content = reply.choices[0].message.content
    try:
        return json.loads(content)["tags"]
    except ValueError:
        raise TagtreeError(f"tagger reply is not JSON: {content[:40]!r}") from None


@task(name="tag-text", tags=[LLM_TAG], **cached("test-1"), **FAST_RETRIES)
def tag_text(base_url: str, text: str) -> list[str]:
    return _tag(base_url, text)


@task(name="tag-text", tags=[LLM_TAG], **cached("test-2"), **FAST_RETRIES)
def tag_text_v2(base_url: str, text: str) -> list[str]:
    return _tag(base_url, text)


@flow(name="tag-texts")
def tag_texts(base_url: str, texts: list[str], version: int = 1) -> list[list[str]]:
    one = tag_text if version == 1 else tag_text_v2
    return [one(base_url, t) for t in texts]


def test_cache_is_reused_across_flow_runs_until_the_version_changes(fake_llm):
    texts = ["sort a python list", "integrate x squared"]
    CALLS.clear()
    assert tag_texts(fake_llm.base_url, texts) == tag_texts(fake_llm.base_url, texts)
    assert CALLS == texts  # the second run computed nothing
    second = tag_texts(fake_llm.base_url, texts, return_state=True)
    assert task_states(second.state_details.flow_run_id, expect=("tag-text",))["tag-text"] == [
        "Cached",
        "Cached",
    ]
    tag_texts(fake_llm.base_url, texts, version=2)
    assert CALLS == texts + texts  # a new algorithm version recomputes
    assert len(fake_llm.chat_requests()) == 4


def test_transient_fault_is_retried_and_the_run_completes(fake_llm):
    fake_llm.inject("500", count=2)
    state = tag_texts(fake_llm.base_url, ["retry me please"], return_state=True)
    assert state.is_completed(), state.message
    assert len(fake_llm.chat_requests()) == 3  # two injected 500s, then success


def test_permanent_fault_fails_fast_and_keeps_finished_work(fake_llm):
    def responder(body):
        text = body["messages"][-1]["content"]
        return "I cannot answer that" if "poison" in text else default_responder(body)

    fake_llm.responder = responder
    texts = ["first good text", "poison pill", "never reached"]
    state = tag_texts(fake_llm.base_url, texts, return_state=True)
    assert state.is_failed()
    assert "tagger reply is not JSON" in state.message
    assert len(fake_llm.chat_requests()) == 2  # the permanent fault was not retried
    fake_llm.responder = default_responder
    fake_llm.reset_log()
    state = tag_texts(fake_llm.base_url, texts, return_state=True)
    assert state.is_completed()
    # The finished text came from the cache; only the failed and unreached ones were requested.
    assert [r["messages"][-1]["content"] for r in fake_llm.chat_requests()] == texts[1:]


def test_ingest_does_not_retry_a_missing_or_bad_file(tmp_path):
    """The ingest task's 5 s retry is for faults that can heal; a missing file, a directory or
    an unreadable Parquet file fails at once, with its message."""
    import time

    from tasks.ingest import ingest

    empty_dir = tmp_path / "empty"  # (a folder holding Parquet files reads as a HF dataset)
    empty_dir.mkdir()
    bad_parquet = tmp_path / "broken.parquet"
    bad_parquet.write_bytes(b"PAR1" + b"\0" * 64)

    @flow(name="ingest-one")
    def ingest_one(path: str) -> dict:
        return ingest(str(tmp_path / "s.duckdb"), [path])

    for path, message in [(str(tmp_path / "missing.jsonl"), "input file not found"),
                          (str(empty_dir), "is a directory"),
                          (str(bad_parquet), "not a readable Parquet file")]:
        started = time.monotonic()
        state = ingest_one(path, return_state=True)
        elapsed = time.monotonic() - started
        assert state.is_failed() and message in state.message, state.message
        states = task_states(state.state_details.flow_run_id, expect=("ingest",))["ingest"]
        assert states == ["Failed"], states
        assert elapsed < 5, f"{elapsed:.1f}s: the task waited for a retry"


def test_is_user_error():
    import errno

    from tasks.policies import is_user_error

    assert is_user_error(TagtreeError("bad input"))
    assert is_user_error(FileNotFoundError(errno.ENOENT, "gone"))
    assert is_user_error(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_user_error(OSError(errno.EIO, "I/O error"))
    assert not is_user_error(RuntimeError("boom"))
