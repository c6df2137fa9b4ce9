"""The `curate` flow under Prefect's test harness: example data, identical re-run, faults."""

from __future__ import annotations

import pytest

from tagtree.io.store import Store
from tests.conftest import EXAMPLES
from tests.flows.conftest import task_states

pytestmark = pytest.mark.usefixtures("prefect_harness")

POOL = str(EXAMPLES / "self_instruct_alpaca.jsonl")
TARGET = str(EXAMPLES / "target_coding_math.jsonl")

# Tasks of `curate` built with tasks.policies.cached(...): on a second identical run each must be
# Cached and the LLM server must see no request. Extend as stages land (annotate, embed, ...).
# `sample` is keyed on the run id (a selection belongs to its run), so it re-runs: cheap.
CACHED_STAGES: list[str] = ["annotate", "build-tree", "ground", "score"]


def _run(db: str, fake_llm, **kw):
    from flows.curate import curate

    overrides = {"llm.base_url": fake_llm.base_url, "llm.model": "fake-tagger"}
    return curate(inputs=[POOL], target=TARGET, db=db, overrides=overrides,
                  return_state=True, **kw)


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


def test_curate_on_example_data(db_path, fake_llm):
    state = _run(db_path, fake_llm)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["ingest"]["loaded"] == 252
    assert result["target"]["loaded"] == 20
    # Each tree level is its own task run inside build-tree.
    levels = result["tree"]["levels"]
    states = task_states(state.state_details.flow_run_id, expect=("cluster-level",))
    assert len(levels) >= 2 and states["cluster-level"] == ["Completed"] * len(levels)
    with Store(db_path) as store:
        assert store.count("instances") == 272
        assert store.rows("SELECT status FROM runs WHERE run_id = ?",
                          [result["run_id"]]) == [("completed",)]


def test_second_identical_run_is_cached_and_sends_no_requests(db_path, fake_llm):
    first = _run(db_path, fake_llm)
    assert first.is_completed(), first.message
    fake_llm.reset_log()
    second = _run(db_path, fake_llm)
    assert second.is_completed(), second.message
    states = task_states(second.state_details.flow_run_id, expect=("ingest", *CACHED_STAGES))
    for name in CACHED_STAGES:
        assert states.get(name) and set(states[name]) == {"Cached"}, (name, states.get(name))
    assert fake_llm.chat_requests() == []
    # Ingest is uncached by design (cheap, idempotent, must notice changed files): it re-ran
    # and loaded nothing new.
    assert states["ingest"] == ["Completed", "Completed"]
    assert second.result()["ingest"]["loaded"] == 0


@pytest.mark.slow  # ingest's own retry waits 5 s before giving up on the missing file
def test_permanent_fault_fails_the_run_and_keeps_finished_work(db_path, fake_llm, tmp_path):
    from flows.curate import curate

    missing = str(tmp_path / "no_such_target.jsonl")
    state = curate(inputs=[POOL], target=missing, db=db_path, return_state=True)
    assert state.is_failed()
    assert "no_such_target.jsonl" in state.message
    with Store(db_path) as store:
        assert store.count("instances") == 252  # the pool ingested before the fault is kept
        assert store.rows("SELECT status FROM runs") == [("failed",)]


def test_a_deleted_and_recreated_store_is_curated_again(db_path, fake_llm):
    """Same path, same data, new file: the cached results described rows of the old file, so
    every stage runs again (a Cached annotate here used to leave the new store without tags)."""
    import os

    first = _run(db_path, fake_llm)
    assert first.is_completed(), first.message
    os.remove(db_path)
    fake_llm.reset_log()
    again = _run(db_path, fake_llm)
    assert again.is_completed(), again.message
    states = task_states(again.state_details.flow_run_id, expect=("ingest", *CACHED_STAGES))
    for name in CACHED_STAGES:
        assert set(states[name]) == {"Completed"}, (name, states[name])
    assert len(fake_llm.chat_requests()) == 272  # every instance tagged again
    with Store(db_path) as store:
        assert store.count("annotations") == 272 and store.count("tree_nodes") > 0
