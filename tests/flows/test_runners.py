"""Task runners: a Dask LocalCluster run of `curate` gives the same result as the thread runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

import tagtree.io.ingest as ingest_mod
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
    "instances": "SELECT id, dataset, source_file, source_line FROM instances ORDER BY id",
    "instance_sources": "SELECT instance_id, dataset, source_line FROM instance_sources "
                        "ORDER BY source_line",
    "quarantine": "SELECT source_line, reason FROM quarantine ORDER BY source_line",
    "selections": "SELECT method, instance_id, rank FROM selections ORDER BY method, rank",
}


def test_unknown_runner_is_a_user_error():
    with pytest.raises(TagtreeError, match="unknown runner"):
        make_task_runner("spark")


def _outcome(db: str, runner: str, pool: str) -> tuple[dict, list[str]]:
    """What the run stored, and the names of its task runs."""
    from flows.curate import curate

    cfg = RunnerConfig(runner=runner, workers=2)
    state = with_runner(curate, cfg)(inputs=[pool], target=TARGET, db=db,
                                     overrides={"sample.seed": 7}, return_state=True)
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    with Store(db) as store:
        stored = {name: store.rows(sql) for name, sql in COMPARED.items()}
    return stored, [r.name.rsplit("-", 1)[0] for r in runs]


def _pool_with_bad_rows(tmp_path) -> str:
    """The example pool with a broken line and a repeated row in the middle, one path for both
    runs (source_file is compared)."""
    lines = Path(POOL).read_text(encoding="utf-8").splitlines()
    lines[100:100] = ['{"instruction": "truncated', lines[3]]
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.slow  # a Dask LocalCluster of 2 worker processes starts in ~5-10 s
@pytest.mark.usefixtures("prefect_harness")
def test_dask_local_cluster_matches_thread_runner(tmp_path, fake_llm, monkeypatch):
    # Environment, not overrides: Dask workers are other processes and read it too.
    monkeypatch.setenv("TAGTREE_LLM_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("TAGTREE_LLM_MODEL", "fake-tagger")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    # The pool (~165 KB) is cut into ~11 shards parsed on the Dask workers; the target (4 KB)
    # stays one `ingest` task. plan-ingest runs in the flow's process, where these apply.
    monkeypatch.setattr(ingest_mod, "PARALLEL_MIN_BYTES", 10_000)
    monkeypatch.setattr(ingest_mod, "CHUNK_BYTES", 16_384)
    pool = _pool_with_bad_rows(tmp_path)
    thread, thread_tasks = _outcome(str(tmp_path / "thread.duckdb"), "thread", pool)
    dask, dask_tasks = _outcome(str(tmp_path / "dask.duckdb"), "dask", pool)
    assert thread["instances"] and thread["quarantine"]  # not vacuously equal
    assert dask == thread
    assert "parse-shard" not in thread_tasks  # one machine: the ingest task's own processes
    assert dask_tasks.count("parse-shard") >= 10 and dask_tasks.count("load-shards") == 1
    assert dask_tasks.count("ingest") == 1  # the target file, too small to shard


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_keyphrase_annotate_runs_as_shard_tasks_on_dask(tmp_path, monkeypatch):
    """The offline keyphrase tagger (CPU-bound) is cut into tag-shard tasks on the workers and
    stores the same tags as the one-task thread run."""
    from flows.curate import curate

    monkeypatch.delenv("TAGTREE_LLM_BASE_URL", raising=False)
    lines = Path(POOL).read_text(encoding="utf-8").splitlines()[:40]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    overrides = {"annotate.tagger": "keyphrase", "annotate.batch_size": 15, "sample.budget": "5"}
    outcome = {}
    for runner in ("thread", "dask"):
        db = str(tmp_path / f"{runner}.duckdb")
        state = with_runner(curate, RunnerConfig(runner=runner, workers=2))(
            inputs=[str(pool)], db=db, overrides=overrides, return_state=True)
        assert state.is_completed(), state.message
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
        with Store(db) as store:
            tags = store.rows("SELECT instance_id, status, tags FROM annotations ORDER BY 1")
        outcome[runner] = tags, [r.name.rsplit("-", 1)[0] for r in runs]
    (thread_tags, thread_tasks), (dask_tags, dask_tasks) = outcome["thread"], outcome["dask"]
    assert len(thread_tags) == 40 and all(status == "ok" for _, status, _ in thread_tags)
    assert dask_tags == thread_tags
    assert "tag-shard" not in thread_tasks and "annotate" in thread_tasks
    assert dask_tasks.count("tag-shard") == 3  # 40 instances in partitions of 15
    assert "load-annotations" in dask_tasks and "annotate" not in dask_tasks


@pytest.mark.slow  # a Dask LocalCluster
@pytest.mark.usefixtures("prefect_harness")
def test_a_flow_run_takes_the_runner_its_environment_names(monkeypatch):
    """The curate flow's runner is chosen when a run starts (a deployment run has no caller to
    wrap it in with_runner): TAGTREE_RUNNER_RUNNER=dask gives a Dask LocalCluster."""
    from prefect import flow, task
    from prefect.context import FlowRunContext

    from flows.curate import curate
    from flows.runners import ConfiguredTaskRunner, effective_runner

    assert isinstance(curate.task_runner, ConfiguredTaskRunner)

    @task
    def threads() -> str:
        import os

        return os.environ.get("TAGTREE_WORKER_THREADS", "")

    @flow(task_runner=ConfiguredTaskRunner())
    def which() -> tuple[str, str]:
        runner = type(effective_runner(FlowRunContext.get().task_runner)).__name__
        return runner, threads.submit().result()

    monkeypatch.setenv("TAGTREE_RUNNER_RUNNER", "dask")
    monkeypatch.setenv("TAGTREE_RUNNER_WORKERS", "2")
    import os

    assert which() == ("DaskTaskRunner", str(max(1, (os.cpu_count() or 1) // 2)))
    monkeypatch.setenv("TAGTREE_RUNNER_RUNNER", "thread")
    assert which()[0] == "ThreadPoolTaskRunner"


@pytest.mark.slow  # a Dask LocalCluster
@pytest.mark.usefixtures("prefect_harness")
def test_tagtree_curate_command_runs_on_dask_when_the_environment_says_so(tmp_path):
    """`TAGTREE_RUNNER_RUNNER=dask tagtree curate ...`: the command's run is on a Dask
    LocalCluster (the offline tagger is cut into tag-shard tasks, which only a cluster runner
    makes) and delivers its selection."""
    from typer.testing import CliRunner

    from tagtree.cli import app

    lines = Path(POOL).read_text(encoding="utf-8").splitlines()[:40]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    db, out = tmp_path / "c.duckdb", tmp_path / "out"
    env = {"TAGTREE_RUNNER_RUNNER": "dask", "TAGTREE_RUNNER_WORKERS": "2",
           "TAGTREE_ANNOTATE_TAGGER": "keyphrase", "TAGTREE_ANNOTATE_BATCH_SIZE": "15",
           "TAGTREE_LLM_BASE_URL": None, "COLUMNS": "200"}
    res = CliRunner().invoke(app, ["curate", str(pool), "--budget", "5", "--db", str(db),
                                   "--out", str(out)], env=env)
    assert res.exit_code == 0, res.output
    assert len((out / "selection.jsonl").read_text().splitlines()) == 5
    with Store(str(db)) as store:
        (run_id,) = store.rows("SELECT run_id FROM runs WHERE kind = 'curate'")[0]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[run_id])))
    names = [r.name.rsplit("-", 1)[0] for r in runs]
    assert names.count("tag-shard") == 3 and "annotate" not in names, names
