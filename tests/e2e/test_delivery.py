"""Delivery under the real thing: `tagtree serve` (four served deployments) against a real
`prefect server` and moto's S3 on loopback, as a user runs it.

1. Two datasets uploaded under different keys with the same file name (a/data.jsonl,
   b/data.jsonl): two on-upload runs, each writing selection, manifest, report and summary.json
   under its own output path, each selection drawn only from its own dataset, each manifest
   naming its run's tree; the Logs tab of each run (read through the API) has the stage lines.
2. The flow process of a run is SIGKILLed mid-run: the run and its curate subflow end Crashed,
   and the object is curated by the next watcher poll, without any new upload.
3. S3 is stopped for 30 s in the middle of a run: the run still delivers once S3 is back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import boto3
import orjson
import pytest

from tests.conftest import EXAMPLES
from tests.e2e.conftest import REPO, free_port, stop, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BUCKET = "tagtree-delivery"
POLL_S = 5
OUTPUTS = {"selection.jsonl", "selection.manifest.json", "report.html", "summary.json"}
STAGES = ("ingest", "annotate", "tree", "ground", "score", "sample", "export", "report")
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}


class Moto:
    """moto's S3 server on a fixed loopback port that can be stopped and started again (its
    buckets live in this process, so they survive the outage)."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = None
        self.start()

    def start(self):
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self):
        """An outage that refuses connections: moto's stop() only ends the serving loop and
        leaves the socket listening, so clients would connect into the backlog and wait out
        botocore's 60 s read timeout on every attempt instead of failing fast."""
        server = self.server._server
        self.server.stop()
        if server is not None:
            server.server_close()


@pytest.fixture(scope="module")
def moto():
    server = Moto()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fake_llm():
    from tests.support.openai_server import FakeOpenAIServer

    with FakeOpenAIServer(latency=0.0) as srv:
        yield srv


def _client(api: str):
    from prefect.client.orchestration import PrefectClient

    return PrefectClient(api)


def _flow_runs(api: str, flow_name: str) -> list:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def read():
        async with _client(api) as client:
            return await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))

    return asyncio.run(read())


def _children(api: str, parent_id) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async def read():
        async with _client(api) as client:
            return await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])))

    return asyncio.run(read())


def _task_runs(api: str, prefixes: tuple[str, ...]) -> list:
    """Every task run whose name starts with one of ``prefixes`` (task run names are the task's
    name plus a short suffix)."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    async def read():
        async with _client(api) as client:
            runs = []
            for prefix in prefixes:  # like_ is a case-insensitive substring match
                runs += await client.read_task_runs(task_run_filter=TaskRunFilter(
                    name=TaskRunFilterName(like_=prefix)), limit=200)
            return runs

    return asyncio.run(read())


def _logs(api: str, flow_run_id) -> list[str]:
    """The messages of a flow run's Logs tab, as the UI reads them."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def read():
        async with _client(api) as client:
            logs = await client.read_logs(log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
            return [log.message for log in logs]

    return asyncio.run(read())


def _rows(path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def _variant(src, dst, prefix: str, limit: int | None = None) -> None:
    """An MT-Bench file with every turn reworded: new content, same format."""
    with open(src, "rb") as fh, open(dst, "wb") as out:
        for i, line in enumerate(fh):
            if limit is not None and i >= limit:
                break
            rec = orjson.loads(line)
            rec["turns"] = [f"{prefix}: {t}" for t in rec["turns"]]
            out.write(orjson.dumps(rec) + b"\n")


def _flow_process(flow_run_id) -> int | None:
    """The pid of the process running ``flow_run_id`` (the runner sets PREFECT__FLOW_RUN_ID
    in the environment of the process it starts for a run)."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if marker in fh.read().split(b"\0"):
                    return int(pid)
        except OSError:
            continue
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_runs_deliver_per_dataset_survive_a_kill_and_an_s3_outage(prefect_server, moto, fake_llm,
                                                                  tmp_path):
    s3 = boto3.client("s3", endpoint_url=moto.url, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    env = {k: v for k, v in prefect_server["env"].items() if k != "PREFECT_LOGGING_LEVEL"}
    env |= AWS | {
        "PYTHONPATH": str(REPO),
        "TAGTREE_OBJECTS_ENDPOINT_URL": moto.url,
        # A request that meets the outage fails in seconds however it fails (refused, or a
        # connection that hangs), so the run's S3 task retries while S3 is still down.
        "TAGTREE_OBJECTS_TIMEOUT_S": "5",
        "TAGTREE_OBJECTS_STATE_DB": str(tmp_path / "landing.duckdb"),
        "TAGTREE_OBJECTS_CACHE_DIR": str(tmp_path / "cache"),
        "TAGTREE_DB": str(tmp_path / "store.duckdb"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "TAGTREE_LLM_BASE_URL": fake_llm.base_url, "TAGTREE_LLM_MODEL": "fake-tagger",
        "OPENAI_API_KEY": "test-key",
        "TAGTREE_ANNOTATE_CONCURRENCY": "4",
        "PYTHONUNBUFFERED": "1",  # the test reads the log while the process runs
    }
    log_path = tmp_path / "serve.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    served = subprocess.Popen(
        [sys.executable, "-m", "tagtree", "serve", "--landing", f"s3://{BUCKET}/landing/",
         "--output-prefix", f"s3://{BUCKET}/curated/", "--interval", str(POLL_S)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = prefect_server["api"]
    uploads: list[str] = []

    def put(key: str, path) -> str:
        s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
        uploads.append(key)
        return s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')

    def alive():
        if served.poll() is not None:
            raise AssertionError("serve exited:\n" + log_path.read_text())

    def completed_for(key: str):
        alive()
        runs = [r for r in _flow_runs(api, "on-upload") if r.state]
        for run in runs:
            if run.state.is_failed():
                raise AssertionError(f"on-upload failed: {run.state.message}\n"
                                     + "\n".join(_logs(api, run.id)))
        return [r for r in runs if r.state.is_completed()
                and r.parameters.get("uri") == f"s3://{BUCKET}/{key}"]

    def outputs(label: str, etag: str) -> dict[str, bytes]:
        prefix = f"curated/{label}/{etag[:16]}/"
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return {o["Key"][len(prefix):]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
                for o in listed}

    try:
        # -- 1. two datasets, same file name, different keys ---------------------------------
        a_src, b_src = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
        a_src.write_bytes(b"\n".join(_rows(EXAMPLES / "self_instruct_alpaca.jsonl")[:120])
                          + b"\n")
        b_src.write_bytes((EXAMPLES / "mt_bench.jsonl").read_bytes())
        delivered = {}
        for key, src in (("landing/a/data.jsonl", a_src), ("landing/b/data.jsonl", b_src)):
            etag, since = put(key, src), time.monotonic()
            run = wait_for(lambda k=key: completed_for(k), 240, f"a Completed run for {key}",
                           every=2)[0]
            delivered[key] = (etag, run)
            print(f"{key}: upload -> Completed on-upload run in {time.monotonic() - since:.0f} s")
        trees = []
        for key, src in (("landing/a/data.jsonl", a_src), ("landing/b/data.jsonl", b_src)):
            etag, run = delivered[key]
            label = key.removeprefix("landing/").removesuffix(".jsonl")
            files = outputs(label, etag)
            assert set(files) == OUTPUTS, (key, sorted(files))
            selected = [line for line in files["selection.jsonl"].splitlines() if line]
            assert selected and set(selected) <= set(_rows(src)), key
            manifest = orjson.loads(files["selection.manifest.json"])
            summary = orjson.loads(files["summary.json"])
            assert manifest["pool"] == len(_rows(src))
            assert manifest["pool_datasets"] == [f"{label}@{etag[:16]}"]
            assert summary["uri"] == f"s3://{BUCKET}/{key}" and summary["etag"] == etag
            assert manifest["files"][0]["path"] == (
                f"s3://{BUCKET}/curated/{label}/{etag[:16]}/selection.jsonl")
            # The run's tree: the one its tree stage logged and its summary reports.
            (curate_run,) = _children(api, run.id)
            # Prefect ships a run's logs in batches from a background worker: on a loaded
            # machine the last stage lines reach the API a few seconds after the run completed.

            def missing(logged: list[str]) -> list[str]:
                return [s for s in STAGES if not any(m.startswith(f"{s}: ") for m in logged)]

            def stage_lines(curate_run=curate_run):
                logged = _logs(api, curate_run.id)
                return None if missing(logged) else logged

            try:
                logged = wait_for(stage_lines, 60, "every stage line in the curate run's logs")
            except AssertionError:
                logged = _logs(api, curate_run.id)
                raise AssertionError(f"stage lines missing from the Logs tab: {missing(logged)}; "
                                     f"logged: {logged}") from None
            tree_line = next(m for m in logged if m.startswith("tree: "))
            assert f"tree version {manifest['tree_version']}" in tree_line
            assert manifest["tree_version"] == summary["curate"]["tree"]["tree_version"]
            wait_for(lambda r=run: any(m.startswith("curated ") for m in _logs(api, r.id)), 60,
                     "the on-upload run's 'curated' line in its logs")
            trees.append(manifest["tree_version"])

        # -- 2. the flow process killed mid-run: the next poll curates it again --------------
        c_src = tmp_path / "c.jsonl"
        _variant(EXAMPLES / "mt_bench.jsonl", c_src, "As a pirate")
        fake_llm.latency = 0.3  # 80 requests, 4 at a time: ~6 s of annotate to kill it in
        c_key = "landing/c/data.jsonl"
        c_etag = put(c_key, c_src)

        def running_curate():
            alive()
            for run in _flow_runs(api, "on-upload"):
                if run.state and run.state.is_running() and \
                        run.parameters.get("uri") == f"s3://{BUCKET}/{c_key}":
                    for child in _children(api, run.id):
                        if any(m.startswith("ingest: ") for m in _logs(api, child.id)):
                            return run, child
            return None

        victim, victim_curate = wait_for(running_curate, 180, "c's curate subflow running",
                                         every=0.5)
        pid = wait_for(lambda: _flow_process(victim.id), 30, "the run's process")
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()

        def crashed():
            runs = {r.id: r for r in _flow_runs(api, "on-upload") + _flow_runs(api, "curate")}
            return runs[victim.id].state.is_crashed() and \
                runs[victim_curate.id].state.is_crashed()

        wait_for(crashed, 120, "the killed run and its curate subflow Crashed", every=1)
        print(f"killed run and its subflow Crashed {time.monotonic() - killed_at:.0f} s "
              "after the SIGKILL")
        fake_llm.latency = 0.0
        wait_for(lambda: completed_for(c_key), 240, "c curated again by a later poll", every=2)
        print(f"{c_key}: curated again {time.monotonic() - killed_at:.0f} s after the SIGKILL, "
              "without a new upload")
        assert set(outputs("c/data", c_etag)) == OUTPUTS
        assert uploads.count(c_key) == 1  # no new upload was needed
        with open(log_path, "rb") as fh:
            assert b"is 'new' again" in fh.read()

        # -- 3. S3 down for 30 s mid-run: the run still delivers --------------------------
        d_src = tmp_path / "d.jsonl"
        _variant(EXAMPLES / "mt_bench.jsonl", d_src, "In French")
        # d's answers are held until S3 is down, so the run is still annotating when the outage
        # begins however loaded the machine is (timing it with a slow fake LLM failed on CI: the
        # run's stage logs reach the API seconds late, and the outage began after the upload).
        fake_llm.hold()
        d_key = "landing/d/data.jsonl"
        d_etag = put(d_key, d_src)

        def running_d():
            alive()
            for run in _flow_runs(api, "on-upload"):
                if run.state and run.state.is_running() and \
                        run.parameters.get("uri") == f"s3://{BUCKET}/{d_key}":
                    for child in _children(api, run.id):
                        if any(m.startswith("ingest: ") for m in _logs(api, child.id)):
                            return run
            return None

        def s3_retries() -> list[str]:
            """S3 tasks that met the outage and are retrying (or retried): read from the API, as
            the UI shows them (a run count above 1, or a retry state), and from the served log.
            CI once saw upload-outputs retry for 4 min while no "Retry" line reached the log."""
            found = [line for line in log_path.read_text(errors="replace").splitlines()
                     if "Retry" in line and ("upload-outputs" in line or "download-object" in line)]
            for tr in _task_runs(api, ("upload-outputs", "download-object")):
                if tr.flow_run_id not in d_runs:  # d's run and its curate subflow only
                    continue
                state = tr.state.name if tr.state else ""
                if tr.run_count > 1 or state in ("AwaitingRetry", "Retrying"):
                    found.append(f"{tr.name}: run {tr.run_count}, {state}")
            return found

        d_run = wait_for(running_d, 180, "d's curate subflow running", every=0.5)
        d_runs = {d_run.id} | {child.id for child in _children(api, d_run.id)}
        moto.stop()
        down_at = time.monotonic()
        fake_llm.release()
        time.sleep(30)
        # At least 30 s, and until an S3 task of the run has met the outage: on a loaded
        # machine the curate stages can outlast 30 s, and S3 would be back before it was needed.
        wait_for(s3_retries, 240, "an S3 task retrying during the outage", every=1)
        moto.start()
        back_at = time.monotonic()
        done = wait_for(lambda: completed_for(d_key), 300, "d delivered after the outage",
                        every=2)
        print(f"{d_key}: S3 down 30 s mid-run; delivered {time.monotonic() - back_at:.0f} s "
              "after S3 was back")
        assert done[0].end_time.timestamp() > time.time() - (time.monotonic() - down_at) + 30
        assert set(outputs("d/data", d_etag)) == OUTPUTS
        # It was the outage that the run rode out: an S3 task of the run retried.
        assert s3_retries(), "no S3 task retried during the outage"
    finally:
        stop(served)
        log.close()
        for line in log_path.read_text(errors="replace").splitlines():
            if any(k in line for k in ("is 'new' again", "Retry", "curated again",
                                       "marked Crashed", "curated s3://")):
                print(line[:300])
        # pytest shows this only when the test failed: what the served runs did last.
        print("-- last lines of the served process --")
        for line in log_path.read_text(errors="replace").splitlines()[-60:]:
            print(line[:300])
