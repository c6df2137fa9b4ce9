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
# `build-tree` does not run at all the second time: the data is grounded on the current tree.
CACHED_STAGES: list[str] = ["annotate", "ground", "score"]


def _run(db: str, fake_llm, extra: dict | None = None, **kw):
    from flows.curate import curate

    overrides = {"llm.base_url": fake_llm.base_url, "llm.model": "fake-tagger", **(extra or {})}
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
    assert "build-tree" not in states and second.result()["tree"]["reused"]
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
    states = task_states(again.state_details.flow_run_id,
                         expect=("ingest", "build-tree", *CACHED_STAGES))
    for name in ("build-tree", *CACHED_STAGES):
        assert set(states[name]) == {"Completed"}, (name, states[name])
    assert len(fake_llm.chat_requests()) == 272  # every instance tagged again
    with Store(db_path) as store:
        assert store.count("annotations") == 272 and store.count("tree_nodes") > 0


def _rows(path) -> list[dict]:
    import orjson

    return [orjson.loads(line) for line in open(path, "rb") if line.strip()]


def test_tree_lifecycle_grounds_close_data_and_rebuilds_for_a_new_domain(db_path, fake_llm,
                                                                        tmp_path):
    """With LLM refinement on, a small batch like the stored pool is grounded on the current
    tree (same version, no build-tree run, no refinement request); a batch from a new domain
    drifts past tree.drift_threshold, measured on that batch alone, and the tree is rebuilt
    (refined again)."""
    import json
    import random

    import orjson

    from tagtree.refine import SCHEMA
    from tests.support.openai_server import default_responder

    def is_refinement(body: dict) -> bool:
        fmt = body.get("response_format") or {}
        return (fmt.get("json_schema") or {}).get("schema") == SCHEMA

    def responder(body: dict) -> str:  # names for refinement, tags for everything else
        if is_refinement(body):
            return json.dumps({"name": "Shared topic", "description": "What the items share."})
        return default_responder(body)

    def refinement_requests() -> int:
        return sum(map(is_refinement, fake_llm.chat_requests()))

    fake_llm.responder = responder
    refine = {"tree.refine_with_llm": True}
    first = _run(db_path, fake_llm, extra=refine)
    assert first.is_completed(), first.message
    v1 = first.result()["tree"]["tree_version"]
    assert refinement_requests() > 0  # refinement is on: the first build asked for names

    close = tmp_path / "close.jsonl"  # same leading words (the fake tagger's tags), new rows
    with close.open("wb") as fh:
        for rec in _rows(POOL)[:15]:
            rec["instruction"] += " Thank you."
            fh.write(orjson.dumps(rec) + b"\n")
    from flows.curate import curate

    overrides = {"llm.base_url": fake_llm.base_url, "llm.model": "fake-tagger", **refine}
    fake_llm.reset_log()
    state = curate(inputs=[str(close)], db=db_path, overrides=overrides, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["tree"]["tree_version"] == v1 and result["tree"]["reused"]
    assert result["tree"]["drift"] <= 0.25
    close_drift = result["tree"]["drift"]
    assert len(fake_llm.chat_requests()) == 15  # the 15 new rows tagged, nothing else asked
    assert refinement_requests() == 0
    states = task_states(state.state_details.flow_run_id, expect=("ground",))
    assert "build-tree" not in states

    rng = random.Random(0)
    syllables = ["zor", "quib", "mrax", "ulf", "pex", "vrin", "okk", "thaz", "glup", "yim"]

    def word() -> str:
        return "".join(rng.choice(syllables) for _ in range(3))

    far = tmp_path / "far.jsonl"  # made-up words: tags no leaf of the tree is near
    with far.open("wb") as fh:
        for _ in range(60):
            fh.write(orjson.dumps({"instruction": " ".join(word() for _ in range(6)),
                                   "output": " ".join(word() for _ in range(12))}) + b"\n")
    fake_llm.reset_log()
    state = curate(inputs=[str(far)], db=db_path, overrides=overrides, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert refinement_requests() > 0  # the rebuilt tree was refined again
    assert "drift_on_previous" in result["tree"], result["tree"]
    checked = result["tree"]["drift_on_previous"]
    assert checked["tree_version"] == v1 and checked["drift"] > 0.25
    assert result["tree"]["tree_version"] != v1
    print(f"close batch: drift {close_drift:.4f}, tree kept; new domain: drift "
          f"{checked['drift']:.4f} on {v1}, rebuilt as {result['tree']['tree_version']}")
    with Store(db_path) as store:
        assert store.latest_tree_version() == result["tree"]["tree_version"]
