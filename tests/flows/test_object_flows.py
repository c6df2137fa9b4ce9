"""watch-bucket, on-upload and refresh under the test harness, with a local directory as bucket."""

from __future__ import annotations

import shutil

import orjson
import pytest

from tasks.objects import state_store
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.usefixtures("prefect_harness")

# Files every curated dataset gets under <output prefix>/<dataset>/. Extend as stages land
# (e.g. "selection.jsonl", "report.html").
EXPECTED_OUTPUTS = ["summary.json"]


@pytest.fixture
def landing(tmp_path):
    path = tmp_path / "landing"
    path.mkdir()
    return path


@pytest.fixture
def settings(tmp_path, monkeypatch, fake_llm):
    monkeypatch.setenv("TAGTREE_LLM_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("TAGTREE_LLM_MODEL", "fake-tagger")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("TAGTREE_OBJECTS_STATE_DB", str(tmp_path / "landing.duckdb"))
    monkeypatch.setenv("TAGTREE_OBJECTS_OUTPUT_PREFIX", str(tmp_path / "curated"))
    monkeypatch.setenv("TAGTREE_DB", str(tmp_path / "store.duckdb"))
    return tmp_path


def test_watch_records_each_object_version_once(landing, settings):
    from flows.watch_bucket import watch_bucket

    shutil.copy(EXAMPLES / "self_instruct_alpaca.jsonl", landing / "a.jsonl")
    shutil.copy(EXAMPLES / "mt_bench.jsonl", landing / "b.jsonl")
    (landing / "_SUCCESS").write_text("")  # not a dataset: ignored
    assert watch_bucket(prefix=str(landing))["emitted"] == 2
    assert watch_bucket(prefix=str(landing))["emitted"] == 0  # nothing new: no events
    with (landing / "b.jsonl").open("a") as fh:  # changed content, new ETag: a new landing
        fh.write('{"turns": ["one more question"]}\n')
    again = watch_bucket(prefix=str(landing))
    assert again["emitted"] == 1 and again["objects"] == [str(landing / "b.jsonl")]
    with state_store(str(settings / "landing.duckdb")) as store:
        assert store.scalar("SELECT count(*) FROM landed_objects WHERE status = 'emitted'") == 3


def test_on_upload_curates_pending_objects_and_writes_outputs(landing, settings):
    from flows.on_upload import on_upload
    from flows.watch_bucket import watch_bucket

    shutil.copy(EXAMPLES / "self_instruct_alpaca.jsonl", landing / "alpaca.jsonl")
    shutil.copy(EXAMPLES / "mt_bench.jsonl", landing / "mt.jsonl")
    watch_bucket(prefix=str(landing))
    # Triggered by the first event only, the run curates both pending objects.
    result = on_upload(uri=str(landing / "alpaca.jsonl"))
    assert sorted(c["uri"] for c in result["curated"]) == sorted(
        [str(landing / "alpaca.jsonl"), str(landing / "mt.jsonl")])
    for name in ("alpaca", "mt"):
        for file in EXPECTED_OUTPUTS:
            assert (settings / "curated" / name / file).is_file(), (name, file)
    summary = orjson.loads((settings / "curated" / "alpaca" / "summary.json").read_bytes())
    assert summary["curate"]["ingest"]["loaded"] == 252
    # The same event again (or a late second trigger) finds nothing pending: no work.
    assert on_upload(uri=str(landing / "alpaca.jsonl"))["curated"] == []


def test_on_upload_failure_marks_the_object_and_fails_clearly(landing, settings):
    from flows.on_upload import on_upload

    bad = landing / "broken.jsonl"
    bad.write_text("this is not json\n")
    state = on_upload(uri=str(bad), etag="e1", return_state=True)
    assert state.is_failed()
    assert "broken.jsonl" in state.message
    with state_store(str(settings / "landing.duckdb")) as store:
        assert store.landed_status(str(bad), "e1") == "failed"


def test_refresh_curates_everything_under_a_prefix(landing, settings):
    from flows.refresh import refresh

    shutil.copy(EXAMPLES / "self_instruct_alpaca.jsonl", landing / "a.jsonl")
    shutil.copy(EXAMPLES / "mt_bench.jsonl", landing / "b.jsonl")
    result = refresh(prefix=str(landing))
    assert result["datasets"] == 2
    assert result["curate"]["ingest"]["loaded"] == 332
    assert (settings / "curated" / "refresh" / "summary.json").is_file()


def _claims(state_db: str) -> dict[str, tuple[str, str | None]]:
    with state_store(state_db) as store:
        return {uri: (status, by) for uri, status, by in store.rows(
            "SELECT uri, status, claimed_by FROM landed_objects")}


def test_on_upload_takes_over_objects_of_dead_runs_and_leaves_live_ones(landing, settings,
                                                                        caplog):
    """A run killed without its hooks (SIGKILL, OOM) leaves its objects 'processing': the next
    run takes over those whose run Prefect reports Crashed or does not know, leaves a live run's
    fresh claim alone, and takes that one too once it is older than the lease."""
    import logging
    import uuid
    from datetime import timedelta

    from prefect import get_client
    from prefect.states import Crashed, Running

    from flows.on_upload import on_upload
    from tagtree.io.store.landed import utcnow

    caplog.set_level(logging.WARNING)
    state_db = str(settings / "landing.duckdb")
    crashed_obj, gone_obj, live_obj = (landing / n for n in ("alpaca.jsonl", "mt.jsonl",
                                                             "live.jsonl"))
    shutil.copy(EXAMPLES / "self_instruct_alpaca.jsonl", crashed_obj)
    shutil.copy(EXAMPLES / "mt_bench.jsonl", gone_obj)
    with (EXAMPLES / "mt_bench.jsonl").open() as src, live_obj.open("w") as dst:
        for line in src:  # other content than mt.jsonl, so its curate ingests new rows
            rec = orjson.loads(line)
            rec["turns"] = [f"As a pirate: {t}" for t in rec["turns"]]
            dst.write(orjson.dumps(rec).decode() + "\n")
    with get_client(sync_client=True) as client:
        crashed = client.create_flow_run(on_upload, parameters={"uri": str(crashed_obj)},
                                         state=Crashed(message="process killed"))
        live = client.create_flow_run(on_upload, parameters={"uri": str(live_obj)},
                                      state=Running())
    gone = str(uuid.uuid4())  # a run id Prefect never saw (e.g. another, reset server)
    with state_store(state_db) as store:
        for obj, claimer in ((crashed_obj, str(crashed.id)), (gone_obj, gone),
                             (live_obj, str(live.id))):
            store.record_landed(str(obj), "e1", None)
            store.claim_landed(claimer, str(obj))

    state = on_upload(uri=str(crashed_obj), etag="e1", return_state=True)
    assert state.is_completed(), state.message
    assert sorted(c["uri"] for c in state.result()["curated"]) == sorted(
        [str(crashed_obj), str(gone_obj)])
    assert _claims(state_db) == {str(crashed_obj): ("done", str(state.state_details.flow_run_id)),
                                 str(gone_obj): ("done", str(state.state_details.flow_run_id)),
                                 str(live_obj): ("processing", str(live.id))}
    reclaims = [r.getMessage() for r in caplog.records if "reclaimed" in r.getMessage()]
    assert len(reclaims) == 2
    assert any(str(crashed_obj) in m and str(crashed.id) in m and "CRASHED" in m
               for m in reclaims)
    assert any(str(gone_obj) in m and gone in m and "not known to Prefect" in m
               for m in reclaims)
    for name in ("alpaca", "mt"):
        assert (settings / "curated" / name / "summary.json").is_file()

    # The live run's claim is now past the lease (default 6 h): the next run takes it over.
    with state_store(state_db) as store:
        store.run("UPDATE landed_objects SET claimed_at = ? WHERE uri = ?",
                  [utcnow() - timedelta(hours=7), str(live_obj)])
    caplog.clear()
    result = on_upload(uri=str(live_obj), etag="e1")
    assert [c["uri"] for c in result["curated"]] == [str(live_obj)]
    assert _claims(state_db)[str(live_obj)][0] == "done"
    assert any(str(live_obj) in r.getMessage() and str(live.id) in r.getMessage()
               and "lease" in r.getMessage() for r in caplog.records)
    assert (settings / "curated" / "live" / "summary.json").is_file()


class _ProcessKilled(BaseException):
    """Stands in for what kills a run's process (a BaseException, as KeyboardInterrupt or a
    termination signal is): the run ends Crashed."""


def test_a_crashed_on_upload_run_puts_its_objects_back_to_new(landing, settings, monkeypatch):
    import flows.on_upload as on_upload_module
    from flows.on_upload import on_upload

    state_db = str(settings / "landing.duckdb")
    for name in ("a.jsonl", "b.jsonl"):
        shutil.copy(EXAMPLES / "mt_bench.jsonl", landing / name)
    with state_store(state_db) as store:
        store.record_landed(str(landing / "b.jsonl"), "e1", None)

    def killed(*args, **kwargs):
        raise _ProcessKilled("the curate process died")

    monkeypatch.setattr(on_upload_module, "download_object", killed)
    with pytest.raises(_ProcessKilled):
        on_upload(uri=str(landing / "a.jsonl"), etag="e1")
    # The hook released both claims: nothing 'processing', nothing claimed.
    assert _claims(state_db) == {str(landing / "a.jsonl"): ("new", None),
                                 str(landing / "b.jsonl"): ("new", None)}
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )

    with get_client(sync_client=True) as client:
        crashed = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Crashed"]))))
    assert any(r.parameters.get("uri") == str(landing / "a.jsonl") for r in crashed)
