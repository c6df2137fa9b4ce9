"""The annotate task in real Prefect flow runs: progress artifact, and a cache keyed on the store's
pending work + tagger fingerprint (an unchanged store hits, a new instance misses)."""

from __future__ import annotations

import json

import pytest
from prefect import flow

from tagtree.config import load_config
from tagtree.io.ingest import ingest_files
from tagtree.io.store import Store
from tasks.annotate import annotate
from tests.flows.conftest import task_states

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@flow
def annotate_flow(db: str, cfg: dict) -> dict:
    return annotate(db, cfg)


def add(store, tmp_path, rows):
    path = tmp_path / f"p{len(rows)}.jsonl"
    path.write_text("".join(json.dumps({"instruction": r, "output": "."}) + "\n" for r in rows))
    ingest_files(store, [str(path)])


def test_annotate_task_caches_on_pending_work(tmp_path, db_path, fake_openai):
    cfg, _ = load_config(None, {"llm.base_url": fake_openai.base_url, "llm.model": "fake-tagger",
                                "annotate.concurrency": 4}, environ={})
    with Store(db_path) as store:
        add(store, tmp_path, [f"Explain topic{i} in graph theory" for i in range(8)])
    first = annotate_flow(db_path, cfg.model_dump())
    assert (first["requested"], first["ok"]) == (8, 8)
    n = len(fake_openai.chat_requests())
    # The key covers the instances and the failures to retry: an identical second run hits.
    second = annotate_flow(db_path, cfg.model_dump(), return_state=True)
    assert task_states(second.state_details.flow_run_id, expect=("annotate",))["annotate"] == [
        "Cached"]
    assert second.result() == first and len(fake_openai.chat_requests()) == n
    with Store(db_path) as store:
        add(store, tmp_path, [f"Explain topic{i} in graph theory" for i in range(9)])
    fourth = annotate_flow(db_path, cfg.model_dump())  # one new instance: the key changed
    assert (fourth["requested"], fourth["cached"]) == (1, 8)
