"""Task runners: a Dask LocalCluster run of `curate` gives the same result as the thread runner."""

from __future__ import annotations

import pytest

from flows.runners import make_task_runner, with_runner
from tagtree.config import RunnerConfig
from tagtree.errors import TagtreeError
from tagtree.io.store import Store
from tests.conftest import EXAMPLES

POOL = str(EXAMPLES / "self_instruct_alpaca.jsonl")
TARGET = str(EXAMPLES / "target_coding_math.jsonl")

# What must agree between runners: per-table contents a run produces. Extend as stages land
# (selections: the selected ids and ranks for a fixed seed).
COMPARED = {
    "instances": "SELECT id FROM instances ORDER BY id",
    "selections": "SELECT method, instance_id, rank FROM selections ORDER BY method, rank",
}


def test_unknown_runner_is_a_user_error():
    with pytest.raises(TagtreeError, match="unknown runner"):
        make_task_runner("spark")


def _outcome(db: str, runner: str) -> dict:
    from flows.curate import curate

    cfg = RunnerConfig(runner=runner, workers=2)
    state = with_runner(curate, cfg)(inputs=[POOL], target=TARGET, db=db,
                                     overrides={"sample.seed": 7}, return_state=True)
    assert state.is_completed(), state.message
    with Store(db) as store:
        return {name: store.rows(sql) for name, sql in COMPARED.items()}


@pytest.mark.slow  # a Dask LocalCluster of 2 worker processes starts in ~5-10 s
@pytest.mark.usefixtures("prefect_harness")
def test_dask_local_cluster_matches_thread_runner(tmp_path, fake_llm, monkeypatch):
    # Environment, not overrides: Dask workers are other processes and read it too.
    monkeypatch.setenv("TAGTREE_LLM_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("TAGTREE_LLM_MODEL", "fake-tagger")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    thread = _outcome(str(tmp_path / "thread.duckdb"), "thread")
    dask = _outcome(str(tmp_path / "dask.duckdb"), "dask")
    assert thread["instances"]  # not vacuously equal
    assert dask == thread
