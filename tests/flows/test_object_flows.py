"""watch-bucket, on-upload and refresh under the test harness, with a local directory as bucket."""

from __future__ import annotations

import shutil

import orjson
import pytest

from tagtree.io.store import Store
from tasks.objects import state_store
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.usefixtures("prefect_harness")

# Files every curated object version gets under <output prefix>/<key path>/<version>/.
EXPECTED_OUTPUTS = ["selection.jsonl", "selection.manifest.json", "report.html", "summary.json"]


def md5(path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def out_dir(settings, label: str, source=None, etag: str | None = None) -> object:
    """Where the outputs of ``source`` (a landed file named ``label``) must be: the version
    is the first 16 characters of its ETag (a local file's is its MD5, as S3's)."""
    return settings / "curated" / label / (etag or md5(source)[:16])


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
            assert (out_dir(settings, name, landing / f"{name}.jsonl") / file).is_file(), \
                (name, file)
    summary = orjson.loads((out_dir(settings, "alpaca", landing / "alpaca.jsonl")
                            / "summary.json").read_bytes())
    assert summary["curate"]["ingest"]["loaded"] == 252
    # Each run selected from its own object only: mt's selection has MT-Bench rows only.
    mt_rows = set((landing / "mt.jsonl").read_text().splitlines())
    picked = (out_dir(settings, "mt", landing / "mt.jsonl") / "selection.jsonl"
              ).read_text().splitlines()
    assert picked and set(picked) <= mt_rows
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
    out = settings / "curated" / "refresh"
    manifest = orjson.loads((out / "selection.manifest.json").read_bytes())
    # Two input formats: one merged training file (export.format auto), named in the manifest.
    assert sorted(f["path"] for f in manifest["files"]) == sorted(
        str(p) for p in out.glob("selection*.jsonl"))
    assert (out / "report.html").is_file() and (out / "summary.json").is_file()
    assert sorted(manifest["pool_datasets"]) == [f"a@{md5(landing / 'a.jsonl')[:16]}",
                                                 f"b@{md5(landing / 'b.jsonl')[:16]}"]

    # b deleted from the prefix: the next refresh selects from a only.
    (landing / "b.jsonl").unlink()
    again = refresh(prefix=str(landing))
    assert again["datasets"] == 1
    manifest = orjson.loads((out / "selection.manifest.json").read_bytes())
    assert manifest["pool_datasets"] == [f"a@{md5(landing / 'a.jsonl')[:16]}"]
    assert manifest["pool"] == 252
    a_rows = set((landing / "a.jsonl").read_text().splitlines())
    picked = (out / "selection.jsonl").read_text().splitlines()
    assert picked and set(picked) <= a_rows


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
        assert (out_dir(settings, name, etag="e1") / "summary.json").is_file()

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
    assert (out_dir(settings, "live", etag="e1") / "summary.json").is_file()


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


def _pirate(src, dst, prefix: str = "As a pirate") -> None:
    """MT-Bench with every turn reworded: other content (other ids) in the same format."""
    with open(src) as fh, open(dst, "w") as out:
        for line in fh:
            rec = orjson.loads(line)
            rec["turns"] = [f"{prefix}: {t}" for t in rec["turns"]]
            out.write(orjson.dumps(rec).decode() + "\n")


def test_same_file_name_under_other_keys_and_versions_never_overwrite(landing, settings):
    """a/data.jsonl, b/data.jsonl and data.v2.jsonl: three runs, three output places named
    by key path and version, each selection drawn only from its own object, each manifest
    naming the tree its run sampled on."""
    from flows.on_upload import on_upload
    from flows.watch_bucket import watch_bucket

    (landing / "a").mkdir()
    (landing / "b").mkdir()
    shutil.copy(EXAMPLES / "self_instruct_alpaca.jsonl", landing / "a" / "data.jsonl")
    shutil.copy(EXAMPLES / "mt_bench.jsonl", landing / "b" / "data.jsonl")
    _pirate(EXAMPLES / "mt_bench.jsonl", landing / "data.v2.jsonl")
    watch_bucket(prefix=str(landing))
    result = on_upload(uri=str(landing / "a" / "data.jsonl"), prefix=str(landing))
    assert len(result["curated"]) == 3
    with Store(str(settings / "store.duckdb")) as store:
        latest = store.latest_tree_version()
    for label, source in (("a/data", landing / "a" / "data.jsonl"),
                          ("b/data", landing / "b" / "data.jsonl"),
                          ("data.v2", landing / "data.v2.jsonl")):
        out = out_dir(settings, label, source)
        assert sorted(p.name for p in out.iterdir()) == sorted(EXPECTED_OUTPUTS), label
        picked = (out / "selection.jsonl").read_text().splitlines()
        assert picked and set(picked) <= set(source.read_text().splitlines()), label
        manifest = orjson.loads((out / "selection.manifest.json").read_bytes())
        summary = orjson.loads((out / "summary.json").read_bytes())
        assert manifest["pool_datasets"] == [f"{label}@{md5(source)[:16]}"]
        assert manifest["pool"] == len(source.read_text().splitlines())
        assert manifest["tree_version"] == summary["curate"]["tree"]["tree_version"]
        assert summary["uri"] == str(source) and summary["etag"] == md5(source)
        assert summary["curate"]["outputs"]["manifest"] == str(out / "selection.manifest.json")
    # The last run's tree is the store's newest; every run sampled on the tree of its time.
    assert manifest["tree_version"] == latest


def test_manifest_names_the_runs_tree_not_the_lexicographic_max(db_path, tmp_path,
                                                                fake_llm, monkeypatch):
    """Scores under another tree version (here one sorting after the real one) must not
    change which tree the manifest names."""
    from flows.curate import curate
    from tagtree.stages.export import run_export

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    overrides = {"llm.base_url": fake_llm.base_url, "llm.model": "fake-tagger"}
    result = curate(inputs=[str(EXAMPLES / "mt_bench.jsonl")], db=db_path,
                    out=str(tmp_path / "out"), overrides=overrides)
    version = result["tree"]["tree_version"]
    manifest = orjson.loads((tmp_path / "out" / "selection.manifest.json").read_bytes())
    assert manifest["tree_version"] == version
    with Store(db_path) as store:
        store.run("INSERT INTO scores (tree_version, instance_id, quality) "
                  "SELECT 'zzzz-not-a-tree', instance_id, 1.0 FROM selections WHERE run_id = ?",
                  [result["run_id"]])
        conf = orjson.loads(store.scalar("SELECT config FROM runs WHERE run_id = ?",
                                         [result["run_id"]]))
    again = run_export(db_path, conf, result["run_id"], str(tmp_path / "again"))
    assert again["tree_version"] == version


def _events(uri: str) -> list:
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    with get_client(sync_client=True) as client:
        page = client.request("POST", "/events/filter", json={"filter": EventFilter(
            event=EventNameFilter(name=["tagtree.object.landed"]),
            resource=EventResourceFilter(id=[f"tagtree.object.{uri}"]),
        ).model_dump(mode="json"), "limit": 50}).json()
    return page["events"]


def test_watcher_sends_crashed_and_failed_objects_again_with_fresh_event_ids(landing, settings):
    """An object whose run crashed (left 'processing') or failed is sent again by the next
    poll, each time under a new event id (the server keeps an id once), until it has had
    objects.max_attempts events."""
    import time

    from prefect import get_client
    from prefect.states import Crashed

    from flows.on_upload import on_upload
    from flows.watch_bucket import watch_bucket
    from tasks.objects import landing_event_id

    state_db = str(settings / "landing.duckdb")
    crashed_obj, bad_obj = landing / "alpaca.jsonl", landing / "broken.jsonl"
    shutil.copy(EXAMPLES / "self_instruct_alpaca.jsonl", crashed_obj)
    bad_obj.write_text("this is not json\n")
    assert watch_bucket(prefix=str(landing))["emitted"] == 2
    # prefix = the object itself: this run takes the broken file only.
    state = on_upload(uri=str(bad_obj), etag=md5(bad_obj), prefix=str(bad_obj),
                      return_state=True)
    assert state.is_failed()
    assert _claims(state_db)[str(bad_obj)][0] == "failed"
    with get_client(sync_client=True) as client:
        crashed = client.create_flow_run(on_upload, parameters={"uri": str(crashed_obj)},
                                         state=Crashed(message="process killed"))
    with state_store(state_db) as store:  # a run claimed it and was SIGKILLed, no hook ran
        store.claim_landed(str(crashed.id), str(crashed_obj))

    again = watch_bucket(prefix=str(landing))
    assert again["retried"] == 2 and again["emitted"] == 2
    for obj in (crashed_obj, bad_obj):
        ids = {landing_event_id(str(obj), md5(obj), n) for n in (0, 1)}
        deadline = time.monotonic() + 20
        while {e["id"] for e in _events(str(obj))} != {str(i) for i in ids}:
            assert time.monotonic() < deadline, _events(str(obj))
            time.sleep(0.5)
    # The broken file fails on every attempt; after max_attempts (3) it is left failed.
    for _ in range(2):
        on_upload(uri="", prefix=str(bad_obj), return_state=True)
        watch_bucket(prefix=str(landing))
    with state_store(state_db) as store:
        assert store.rows("SELECT status, attempts, error FROM landed_objects WHERE uri = ?",
                          [str(bad_obj)])[0][:2] == ("failed", 3)
        assert "broken.jsonl" in store.scalar("SELECT error FROM landed_objects WHERE uri = ?",
                                              [str(bad_obj)])
    assert watch_bucket(prefix=str(landing))["retried"] == 0


def test_on_upload_without_etag_resolves_it(landing, settings):
    from flows.on_upload import on_upload

    obj = landing / "mt.jsonl"
    shutil.copy(EXAMPLES / "mt_bench.jsonl", obj)
    result = on_upload(uri=str(obj))
    assert [(c["uri"], c["etag"]) for c in result["curated"]] == [(str(obj), md5(obj))]
    assert (out_dir(settings, "mt", obj) / "selection.jsonl").is_file()
