"""The real thing on loopback: prefect server + moto S3 + the four deployments served in one
process. Upload a dataset -> watch-bucket emits the landing event -> the trigger starts on-upload
-> Completed -> selection and report under the output prefix; the same object again -> no run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import boto3
import pytest

from tests.e2e.conftest import REPO, stop, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BUCKET = "tagtree-e2e"
# Files each curated object version gets under <output prefix>/<key path>/<version>/.
EXPECTED_OUTPUTS = ["selection.jsonl", "selection.manifest.json", "report.html", "summary.json"]
POLL_S = 8


def _runs(api: str, flow_name: str) -> list:
    import asyncio

    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def read():
        async with PrefectClient(api) as client:
            return await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))

    return asyncio.run(read())


@pytest.fixture
def fake_llm():
    from tests.support.openai_server import FakeOpenAIServer

    with FakeOpenAIServer(latency=0.0) as srv:
        yield srv


def test_upload_triggers_on_upload_once(prefect_server, s3_server, fake_llm, tmp_path):
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=s3_server, **{
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
        "region_name": "us-east-1"})
    s3.create_bucket(Bucket=BUCKET)
    env = prefect_server["env"] | aws | {
        "TAGTREE_OBJECTS_ENDPOINT_URL": s3_server,
        "TAGTREE_OBJECTS_STATE_DB": str(tmp_path / "landing.duckdb"),
        "TAGTREE_OBJECTS_CACHE_DIR": str(tmp_path / "cache"),
        "TAGTREE_DB": str(tmp_path / "store.duckdb"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "TAGTREE_LLM_BASE_URL": fake_llm.base_url, "TAGTREE_LLM_MODEL": "fake-tagger",
        "OPENAI_API_KEY": "test-key",
    }
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    served = subprocess.Popen(
        [sys.executable, "-m", "deployments.serve", "--landing", f"s3://{BUCKET}/landing/",
         "--output-prefix", f"s3://{BUCKET}/curated/", "--interval", str(POLL_S)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = prefect_server["api"]
    try:
        body = (REPO / "examples" / "self_instruct_alpaca.jsonl").read_bytes()
        s3.put_object(Bucket=BUCKET, Key="landing/alpaca.jsonl", Body=body)

        def completed_uploads():
            if served.poll() is not None:
                raise AssertionError("serve exited:\n" + (tmp_path / "serve.log").read_text())
            runs = _runs(api, "on-upload")
            failed = [r for r in runs if r.state and r.state.is_failed()]
            assert not failed, failed[0].state.message
            return [r for r in runs if r.state and r.state.is_completed()]

        done = wait_for(completed_uploads, 300, "a Completed on-upload run", every=2)
        assert len(done) == 1
        assert done[0].parameters["uri"] == f"s3://{BUCKET}/landing/alpaca.jsonl"
        etag = s3.head_object(Bucket=BUCKET, Key="landing/alpaca.jsonl")["ETag"].strip('"')
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"curated/alpaca/{etag[:16]}/")
        keys = {o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", [])}
        assert keys == set(EXPECTED_OUTPUTS), keys

        # The same object again (same content, same ETag): polls see it, nothing is emitted.
        s3.put_object(Bucket=BUCKET, Key="landing/alpaca.jsonl", Body=body)
        since = time.time()

        def two_polls_after():
            runs = [r for r in _runs(api, "watch-bucket")
                    if r.state and r.state.is_completed() and r.end_time
                    and r.end_time.timestamp() > since]
            return len(runs) >= 2

        wait_for(two_polls_after, 120, "two watch-bucket polls after the re-upload", every=2)
        time.sleep(3)  # room for a (wrong) trigger to create a run
        assert len(_runs(api, "on-upload")) == 1
    finally:
        stop(served)
        log.close()
    assert served.poll() is not None
    assert os.path.exists(tmp_path / "landing.duckdb")
