"""Annotate stage against a real loopback OpenAI-compatible server with injected faults, a real
DuckDB file and the real ``openai`` client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tagtree.config import load_config
from tagtree.errors import TagtreeError
from tagtree.io.annotator import annotate_store, open_tagger
from tagtree.io.ingest import ingest_files
from tagtree.io.llm import AsyncLLM
from tagtree.io.store import Store
from tests.support.openai_server import FakeOpenAIServer, default_responder

REPO = Path(__file__).resolve().parents[2]


def seed(store, tmp_path, n: int, text=lambda i: f"Explain item{i:05d} recursion in python"):
    path = tmp_path / f"pool{n}.jsonl"
    path.write_text("".join(json.dumps({"instruction": text(i), "output": f"Answer {i}."}) + "\n"
                            for i in range(n)))
    ingest_files(store, [str(path)])
    return {row[0]: row[1] for row in store.rows("SELECT id, instruction FROM instances")}


def config(srv, **knobs):
    overrides = {"llm.base_url": srv.base_url, "llm.model": "fake-tagger",
                 "llm.max_retries": 3, "llm.timeout_s": 1.0, "annotate.concurrency": 8}
    cfg, _ = load_config(None, overrides | knobs, environ={})
    return cfg


def run(store, cfg, **kw):
    with open_tagger(cfg) as tagger:
        tagger.llm.backoff_base_s = 0.01  # keep retries fast; Retry-After still applies
        return tagger, annotate_store(store, tagger, **kw)


def requested_items(srv) -> list[str]:
    """The item tokens ('item00042') of every chat request, in arrival order."""
    import re

    # A request cut off by the kill arrives without a body: it asked for nothing.
    return [re.search(r"item\d{5}", body["messages"][-1]["content"]).group(0)
            for body in srv.chat_requests() if body and body.get("messages")]


def table(store, tagger):
    return store.rows("SELECT instance_id, status, error, tags, attempts FROM annotations "
                      "WHERE tagger = ? ORDER BY instance_id", [tagger])


def poisoned(body: dict) -> str:
    text = body["messages"][-1]["content"]
    if "POISON" in text:
        return "I would rather not answer."  # never a tag list: fails after content retries
    if "BROKEN" in text:
        raise RuntimeError("responder crashed")  # the server answers 500, every time
    return default_responder(body)


def test_every_fault_ends_ok_or_failed_with_reason_and_counts_add_up(tmp_path, db_path):
    def text(i):
        tag = "POISON " if i % 50 == 7 else "BROKEN " if i % 50 == 9 else ""
        return f"{tag}Explain item{i:05d} recursion in python"

    with FakeOpenAIServer(responder=poisoned) as srv, Store(db_path) as store:
        ids = seed(store, tmp_path, 200, text)
        for kind, kw in [("429", {"retry_after": 0.01}), ("500", {}), ("reset", {}),
                         ("slow", {"seconds": 1.5}), ("malformed", {}), ("empty", {}),
                         ("fence", {})]:
            srv.inject(kind, count=4, **kw)
        tagger, summary = run(store, config(srv), flush_rows=16)
        rows = table(store, tagger.fingerprint)

        assert len(rows) == len({r[0] for r in rows}) == 200 == len(ids)  # no duplicates
        ok = [r for r in rows if r[1] == "ok"]
        failed = [r for r in rows if r[1] == "failed"]
        assert len(ok) + len(failed) == 200
        assert (summary.requested, summary.ok, summary.failed) == (200, len(ok), len(failed))
        assert summary.cached == 0 and summary.instances == 200
        assert all(r[2] for r in failed) and all(r[3] is None for r in failed)
        assert all(2 <= len(r[3]) <= 12 and r[2] is None for r in ok)
        poisoned_ids = {i for i, t in ids.items() if "POISON" in t}
        broken_ids = {i for i, t in ids.items() if "BROKEN" in t}
        assert {r[0] for r in failed} == poisoned_ids | broken_ids
        for r in failed:
            expected = "no tag list" if r[0] in poisoned_ids else "http 500"
            assert expected in r[2], r
        # Every injected fault was met and retried; tokens were recorded.
        assert len(srv.chat_requests()) >= 200 + 4 * 5
        assert summary.prompt_tokens > 0 and summary.completion_tokens > 0
        assert sum(r[4] for r in rows) >= 200 + 4 * 5

        # A re-run asks again only for the failed ones; attempts accumulate.
        srv.reset_log()
        _, again = run(store, config(srv))
        asked = {b["messages"][-1]["content"] for b in srv.chat_requests()}
        assert again.requested == len(failed) and again.cached == len(ok)
        assert all("POISON" in a or "BROKEN" in a for a in asked)
        after = table(store, tagger.fingerprint)
        assert len(after) == 200
        assert all(b[4] > a[4] for a, b in zip(rows, after, strict=True) if a[1] == "failed")


def test_rerun_of_a_complete_table_sends_nothing_and_new_instances_only_get_tagged(
        tmp_path, db_path, fake_openai):
    with Store(db_path) as store:
        seed(store, tmp_path, 30)
        tagger, first = run(store, config(fake_openai))
        assert first.ok == 30
        n = len(fake_openai.chat_requests())
        _, second = run(store, config(fake_openai))
        assert second.requested == 0 and second.cached == 30
        assert len(fake_openai.chat_requests()) == n
        seed(store, tmp_path, 40)  # ids 0-29 exist already: 10 new
        _, third = run(store, config(fake_openai))
        assert third.requested == 10 and len(table(store, tagger.fingerprint)) == 40
        # Another model is another fingerprint: everything is tagged again, under its own key.
        fake_openai.models = ("fake-tagger", "other")
        other, fourth = run(store, config(fake_openai, **{"llm.model": "other"}))
        assert fourth.requested == 40 and other.fingerprint != tagger.fingerprint


def test_authentication_failure_stops_the_run_with_a_clear_error(tmp_path, db_path, fake_openai):
    with Store(db_path) as store:
        seed(store, tmp_path, 20)
        fake_openai.inject("status", count=100, code=401, message="bad key")
        with pytest.raises(TagtreeError, match="authentication failed"):
            run(store, config(fake_openai))
        assert store.scalar("SELECT count(*) FROM annotations WHERE status = 'ok'") == 0


def test_client_error_fails_only_that_instance(tmp_path, db_path, fake_openai):
    with Store(db_path) as store:
        seed(store, tmp_path, 10)
        fake_openai.inject("status", count=1, code=422, message="bad request body")
        tagger, summary = run(store, config(fake_openai, **{"annotate.concurrency": 1}))
        assert (summary.ok, summary.failed) == (9, 1)
        assert summary.failures == {"http 422": 1}


def test_server_without_structured_output_falls_back_to_tolerant_parsing(
        tmp_path, db_path, fake_openai):
    with Store(db_path) as store:
        seed(store, tmp_path, 6)
        fake_openai.inject("status", code=400,
                           message="response_format json_schema is not supported")
        fake_openai.inject("fence", count=6)  # free text from now on: tags in a code fence
        _, summary = run(store, config(fake_openai, **{"annotate.concurrency": 1}))
        assert (summary.ok, summary.failed) == (6, 0)
        bodies = fake_openai.chat_requests()
        assert "response_format" in bodies[0]
        assert len(bodies) == 7 and all("response_format" not in b for b in bodies[1:])


def test_critic_loop_revises_tags(tmp_path, db_path):
    def responder(body):
        name = body["response_format"]["json_schema"]["name"]
        user = body["messages"][-1]["content"]
        if name == "critique":
            if "revised tag" in user:
                return json.dumps({"ok": True, "critique": ""})
            return json.dumps({"ok": False, "critique": "too coarse: split it"})
        if "Reviewer's critique" in user:
            return json.dumps({"tags": ["revised tag", "second revised tag"]})
        return json.dumps({"tags": ["coarse", "coding"]})

    with FakeOpenAIServer(responder=responder) as srv, Store(db_path) as store:
        seed(store, tmp_path, 5)
        tagger, summary = run(store, config(srv, **{"annotate.critic_rounds": 3}))
        assert summary.ok == 5
        tags = {tuple(r[3]) for r in table(store, tagger.fingerprint)}
        assert tags == {("revised tag", "second revised tag")}
        # tag, critique (reject), revise, critique (accept): 4 requests, not 3 rounds' 7.
        assert len(srv.chat_requests()) == 5 * 4


def test_retry_after_is_honoured_and_rate_limit_paces_requests(fake_openai):
    async def one(llm):
        async with llm:
            return await llm.chat([{"role": "user", "content": "item00001 x"}])

    fake_openai.inject("429", retry_after=0.6)
    llm = AsyncLLM(fake_openai.base_url, "fake-tagger", backoff_base_s=0.001)
    start = time.perf_counter()
    result = asyncio.run(one(llm))
    assert result.attempts == 2 and time.perf_counter() - start >= 0.6

    async def many(llm, n):
        async with llm:
            return await asyncio.gather(*[llm.chat([{"role": "user", "content": f"t{i}"}])
                                          for i in range(n)])

    paced = AsyncLLM(fake_openai.base_url, "fake-tagger", concurrency=32,
                     requests_per_minute=1200)  # 20/s, bursts of 20
    start = time.perf_counter()
    asyncio.run(many(paced, 40))
    assert time.perf_counter() - start >= 0.9


def test_task_body_returns_counts_and_fingerprint(tmp_path, db_path, fake_openai):
    from tasks.annotate import annotate

    with Store(db_path) as store:
        seed(store, tmp_path, 12)
    cfg = config(fake_openai).model_dump()
    out = annotate.fn(db_path, cfg)
    assert (out["requested"], out["ok"], out["failed"], out["cached"]) == (12, 12, 0, 0)
    assert out["tagger"].startswith("llm:fake-tagger:") and out["table"] == "annotations"
    json.dumps(out)  # a small JSON-able summary
    again = annotate.fn(db_path, cfg)
    assert again["requested"] == 0 and again["cached"] == 12


def test_cli_annotate_prints_summary_and_examples(tmp_path, db_path, fake_openai):
    from typer.testing import CliRunner

    from tagtree.cli import app

    with Store(db_path) as store:
        seed(store, tmp_path, 6)
    result = CliRunner().invoke(app, [
        "annotate", "--llm-base-url", fake_openai.base_url, "--llm-model", "fake-tagger",
        "--concurrency", "4", "--db", db_path], env={"OPENAI_API_KEY": "sk-secret-key"})
    assert result.exit_code == 0, result.output
    assert "annotated 6 instances (6 ok, 0 failed)" in result.output
    assert "-> " in result.output and "sk-secret" not in result.output
    with Store(db_path) as store:  # the key is nowhere in the database
        dump = json.dumps(store.rows("SELECT * FROM taggers"), default=str)
        dump += json.dumps(store.rows("SELECT * FROM annotations"), default=str)
    assert "sk-secret" not in dump
    stats = CliRunner().invoke(app, ["stats", "--db", db_path])
    assert stats.exit_code == 0, stats.output
    assert "annotations" in stats.output and "llm:fake" in stats.output


KILL_SCRIPT = """
import sys
from tagtree.config import load_config
from tagtree.io.annotator import annotate_store, open_tagger
from tagtree.io.store import Store
cfg, _ = load_config(None, {"llm.base_url": sys.argv[2], "llm.model": "fake-tagger",
                            "annotate.concurrency": 16}, environ={})
with Store(sys.argv[1]) as store, open_tagger(cfg) as tagger:
    print(annotate_store(store, tagger).line(), flush=True)
"""


@pytest.mark.slow
def test_kill_mid_run_then_rerun_requests_only_the_missing(tmp_path, db_path):
    with FakeOpenAIServer(latency=0.01) as srv:
        with Store(db_path) as store:
            ids = seed(store, tmp_path, 2000)
        by_item = {t.split()[1]: i for i, t in ids.items()}
        env = os.environ | {"PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, db_path, srv.base_url],
                                env=env, cwd=REPO)
        deadline = time.monotonic() + 60
        while len(srv.chat_requests()) < 700 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        first = requested_items(srv)
        assert 700 <= len(first) < 2000, "the kill must land mid-run"

        with Store(db_path) as store:
            cfg = config(srv, **{"annotate.concurrency": 16})
            with open_tagger(cfg) as tagger:
                done = {r[0] for r in table(store, tagger.fingerprint)}
            assert 0 < len(done) < 2000
            srv.reset_log()
            _, summary = run(store, cfg)
            second = requested_items(srv)
            rows = table(store, tagger.fingerprint)

    # Only the missing ones were requested, each once; the table is complete, no duplicates.
    assert len(second) == len(set(second)) == 2000 - len(done) == summary.requested
    assert {by_item[item] for item in second} == set(ids) - done
    assert len(rows) == len({r[0] for r in rows}) == 2000
    assert all(r[1] == "ok" for r in rows)
    # What the kill lost is at most the work in flight or not yet flushed.
    lost = set(first) - {item for item, i in by_item.items() if i in done}
    assert len(lost) <= 16 * 2 + 64 + 100
