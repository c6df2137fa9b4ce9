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
