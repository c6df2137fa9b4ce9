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


def test_a_long_offline_annotate_says_once_what_would_be_faster(caplog):
    """The first progress line whose ETA exceeds the threshold comes with one warning naming
    the faster options; an endpoint's tagger gets none (its speed is the endpoint's)."""
    import logging
    import time

    from prefect import task

    from tasks.annotate import Progress, offline_speed_hint

    offline, _ = load_config(None, {}, environ={})
    online, _ = load_config(None, {"llm.base_url": "http://127.0.0.1:9/v1",
                                   "llm.model": "m"}, environ={})
    assert offline_speed_hint(online) == ""
    hint = offline_speed_hint(offline)
    assert "TAGTREE_EMBED_BACKEND=static" in hint

    @task
    def slow_progress() -> None:
        progress = Progress("annotated", "annotate-progress-hint-test", log_every_s=0.0,
                            slow_hint=hint, slow_after_s=60.0)
        for done in (1, 2, 3):
            time.sleep(0.05)
            progress(done, 1_000_000)  # ~20 rows/s: many hours to go

    @flow
    def run() -> None:
        slow_progress()

    caplog.set_level(logging.WARNING)  # (the run loggers are at WARNING in these tests)
    run()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "TAGTREE_EMBED_BACKEND=static" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("annotated: ") and "to go" in \
        warnings[0]
