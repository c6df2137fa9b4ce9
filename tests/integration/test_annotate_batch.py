"""Batch API mode against the loopback server's files + batches endpoints."""

from __future__ import annotations

import json

import pytest

from tagtree.config import load_config
from tagtree.errors import TagtreeError
from tagtree.io.annotator import open_tagger
from tagtree.io.batch import annotate_batch
from tagtree.io.ingest import ingest_files
from tagtree.io.store import Store
from tests.support.openai_server import FakeOpenAIServer, default_responder


def seed(store, tmp_path, n):
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Explain item{i} graph coloring",
                                        "output": "..."}) + "\n" for i in range(n)))
    ingest_files(store, [str(path)])


def cfg_for(srv, **knobs):
    cfg, _ = load_config(None, {"llm.base_url": srv.base_url, "llm.model": "fake-tagger",
                                "annotate.mode": "batch", "annotate.batch_poll_s": 0.05,
                                "annotate.batch_max_requests": 10} | knobs, environ={})
    return cfg


def batch_posts(srv):
    return [r for r in srv.requests if r["path"].endswith("/batches")
            and r["body"] and "input_file_id" in r["body"]]


def test_batch_mode_submits_polls_loads_and_never_resubmits(tmp_path, db_path):
    def responder(body):
        if "item3 " in body["messages"][-1]["content"]:
            return "no tags"
        return default_responder(body)

    with FakeOpenAIServer(responder=responder, batch_delay=0.2) as srv, Store(db_path) as store:
        seed(store, tmp_path, 25)
        cfg = cfg_for(srv)
        with open_tagger(cfg) as tagger:
            summary = annotate_batch(store, tagger, cfg)
            assert (summary.requested, summary.ok, summary.failed) == (25, 24, 1)
            assert len(batch_posts(srv)) == 3  # 10 + 10 + 5 requests
            jobs = store.rows("SELECT status, n_requests FROM batch_jobs ORDER BY n_requests")
            assert [j[0] for j in jobs] == ["loaded"] * 3
            rows = store.rows("SELECT status, count(*) FROM annotations GROUP BY 1 ORDER BY 1")
            assert rows == [("failed", 1), ("ok", 24)]
            uploaded = srv.files[batch_posts(srv)[0]["body"]["input_file_id"]]["content"]
            line = json.loads(uploaded.decode().splitlines()[0])
            assert line["body"]["response_format"]["type"] == "json_schema"
            assert srv.chat_requests() == []  # nothing went through the online endpoint

            again = annotate_batch(store, tagger, cfg)  # only the failed one is resubmitted
            assert again.requested == 1 and len(batch_posts(srv)) == 4


def test_batch_mode_resumes_a_submitted_batch_by_id(tmp_path, db_path):
    with FakeOpenAIServer(batch_delay=0.3) as srv, Store(db_path) as store:
        seed(store, tmp_path, 8)
        cfg = cfg_for(srv)
        with open_tagger(cfg) as tagger:
            first = annotate_batch(store, tagger, cfg, wait=False)  # submit and leave
            assert first.requested == 0 and len(batch_posts(srv)) == 1
            assert store.scalar("SELECT count(*) FROM annotations WHERE status = 'submitted'") == 8
            second = annotate_batch(store, tagger, cfg)  # a later run picks the batch up by id
            assert second.ok == 8 and len(batch_posts(srv)) == 1  # not paid twice
            assert store.scalar("SELECT status FROM batch_jobs") == "loaded"


def test_batch_mode_needs_an_llm_and_no_critic(tmp_path, db_path, fake_openai):
    with Store(db_path) as store:
        cfg = cfg_for(fake_openai, **{"annotate.critic_rounds": 1})
        with open_tagger(cfg) as tagger, pytest.raises(TagtreeError, match="critic"):
            annotate_batch(store, tagger, cfg)
