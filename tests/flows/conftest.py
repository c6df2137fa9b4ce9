"""Flow tests run under Prefect's test harness (one temporary API server for the session) with
results persisted to a session directory, so caching across flow runs is really exercised."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}):
        with prefect_test_harness(server_startup_timeout=120):
            yield storage


@pytest.fixture
def fake_llm():
    from tests.support.openai_server import FakeOpenAIServer

    with FakeOpenAIServer(latency=0.0) as srv:
        yield srv


def task_states(flow_run_id, expect: tuple[str, ...] = (), timeout: float = 30.0
                ) -> dict[str, list[str]]:
    """Task name -> final state names of every task run of a flow run, subflows' tasks included.

    Prefect 3 records task-run states through events, a moment after the run returns: poll until
    every task run named in ``expect`` is present and no state is still pending/running."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        out = _task_states_once(flow_run_id)
        settled = all(s not in ("Pending", "Running", "Scheduled")
                      for states in out.values() for s in states)
        if (settled and all(name in out for name in expect)) or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def _task_states_once(flow_run_id) -> dict[str, list[str]]:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentTaskRunId,
    )

    out: dict[str, list[str]] = {}
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        for run in runs:
            out.setdefault(run.name.rsplit("-", 1)[0], []).append(run.state.name)
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[r.id for r in runs])))
    for child in children:
        for name, states in _task_states_once(child.id).items():
            out.setdefault(name, []).extend(states)
    return out
