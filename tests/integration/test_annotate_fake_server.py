"""The loopback OpenAI-compatible server used by the annotate tests (and other stages' tests)."""

from __future__ import annotations

import json
import time

import numpy as np
import openai
import pytest

from tests.support.openai_server import FakeOpenAIServer, fake_embedding


def client(srv, **kw):
    return openai.OpenAI(base_url=srv.base_url, api_key="test-key", max_retries=0, **kw)


def ask(c, text="Sort a python list with binary search"):
    return c.chat.completions.create(
        model="fake-tagger", messages=[{"role": "user", "content": text}],
        response_format={"type": "json_schema", "json_schema": {"name": "tags", "schema": {}}})


def test_chat_default_responder_is_deterministic_tags(fake_openai):
    c = client(fake_openai)
    first, second = ask(c), ask(c)
    tags = json.loads(first.choices[0].message.content)["tags"]
    assert tags == json.loads(second.choices[0].message.content)["tags"]
    assert "python" in tags and "binary" in tags and 2 <= len(tags) <= 12
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0
    bodies = fake_openai.chat_requests()
    assert len(bodies) == 2 and bodies[0]["response_format"]["type"] == "json_schema"
    assert all(r["status"] == 200 for r in fake_openai.requests)


def test_custom_responder_sees_the_request_body():
    with FakeOpenAIServer(responder=lambda body: body["model"] + "!") as srv:
        out = ask(client(srv))
    assert out.choices[0].message.content == "fake-tagger!"


def test_faults_in_order_then_normal(fake_openai):
    c = client(fake_openai, timeout=0.5)
    fake_openai.inject("429", retry_after=7)
    fake_openai.inject("500")
    fake_openai.inject("reset")
    fake_openai.inject("slow", seconds=1.0)
    fake_openai.inject("empty")
    fake_openai.inject("fence")
    fake_openai.inject("malformed")
    with pytest.raises(openai.RateLimitError) as exc:
        ask(c)
    assert exc.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError):
        ask(c)
    with pytest.raises(openai.APIConnectionError):
        ask(c)
    with pytest.raises(openai.APITimeoutError):
        ask(c)
    assert ask(c).choices[0].message.content == ""
    fenced = ask(c).choices[0].message.content
    assert fenced.startswith("```json\n") and fenced.endswith("\n```")
    with pytest.raises((json.JSONDecodeError, openai.APIResponseValidationError, ValueError)):
        ask(c)
    assert json.loads(ask(c).choices[0].message.content)["tags"]
    statuses = [r["status"] for r in fake_openai.requests]
    assert statuses[:3] == [429, 500, 0] and len(fake_openai.chat_requests()) == 8


def test_unknown_fault_kind_is_rejected(fake_openai):
    with pytest.raises(ValueError):
        fake_openai.inject("teapot")


def test_embeddings_float_and_base64_are_deterministic_unit_vectors(fake_openai):
    c = client(fake_openai)
    via_b64 = c.embeddings.create(model="e", input=["alpha", "beta"])  # client asks base64
    via_float = c.embeddings.create(model="e", input="alpha", encoding_format="float")
    a = np.asarray(via_b64.data[0].embedding, dtype=np.float32)
    assert a.shape == (384,) and abs(np.linalg.norm(a) - 1) < 1e-5
    np.testing.assert_allclose(a, via_float.data[0].embedding, atol=1e-6)
    np.testing.assert_allclose(a, fake_embedding("alpha", 384), atol=1e-6)
    assert not np.allclose(a, via_b64.data[1].embedding)


def test_models(fake_openai):
    assert [m.id for m in client(fake_openai).models.list()] == ["fake-tagger"]


def test_files_and_batches_round_trip():
    with FakeOpenAIServer(batch_delay=0.3) as srv:
        c = client(srv)
        lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "m", "messages": [{"role": "user", "content": f"topic{i} x"}]}}
                 for i in range(3)]
        f = c.files.create(file=("in.jsonl", "\n".join(map(json.dumps, lines)).encode()),
                           purpose="batch")
        assert c.files.content(f.id).read().count(b"\n") == 2
        batch = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                 completion_window="24h")
        assert batch.status == "in_progress" and c.batches.retrieve(batch.id).output_file_id is None
        time.sleep(0.35)
        done = c.batches.retrieve(batch.id)
        assert done.status == "completed" and done.request_counts.completed == 3
        out = [json.loads(x) for x in c.files.content(done.output_file_id).read().splitlines()]
        assert sorted(o["custom_id"] for o in out) == ["r0", "r1", "r2"]
        body = out[0]["response"]["body"]
        assert json.loads(body["choices"][0]["message"]["content"])["tags"]
        assert srv.chat_requests() == []  # batch lines are not HTTP chat requests


def test_keep_alive_sustains_hundreds_of_requests_per_second(fake_openai):
    c = client(fake_openai)
    t0 = time.perf_counter()
    for _ in range(200):
        ask(c, "short")
    rate = 200 / (time.perf_counter() - t0)
    assert rate > 100, f"{rate:.0f} req/s sequential on one keep-alive connection"
