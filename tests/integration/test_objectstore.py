"""Object store adapter against moto's real S3 server on loopback, and local directories."""

from __future__ import annotations

import hashlib

import boto3
import pytest

from tagtree.errors import TagtreeError
from tagtree.io.objectstore import (
    LocalObjects,
    S3Objects,
    cache_path,
    is_dataset,
    join_uri,
    objects_for,
    split_s3,
)


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch):
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)


@pytest.fixture
def bucket(s3_endpoint, aws_env, request):
    name = "b-" + request.node.name.lower().replace("_", "-")[:40]
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def test_s3_list_download_upload_roundtrip(s3_endpoint, bucket, tmp_path):
    objs = objects_for("s3://x/", endpoint_url=s3_endpoint)
    assert isinstance(objs, S3Objects)
    src = tmp_path / "data.jsonl"
    src.write_text('{"instruction": "a", "output": "b"}\n')
    uri = objs.upload(src, f"s3://{bucket}/landing/data.jsonl")
    objs.upload(src, f"s3://{bucket}/other/skip.jsonl")
    listed = objs.list(f"s3://{bucket}/landing/")
    assert [o.uri for o in listed] == [uri]
    # Single-part ETag is the MD5 of the content, as for local objects.
    assert listed[0].etag == hashlib.md5(src.read_bytes()).hexdigest()
    dest = cache_path(tmp_path / "cache", uri, listed[0].etag)
    assert objs.download(uri, dest).read_text() == src.read_text()
    assert dest.name == "data.jsonl"


def test_local_directory_behaves_like_a_prefix(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jsonl").write_text("1\n")
    objs = objects_for(str(tmp_path))
    assert isinstance(objs, LocalObjects)
    listed = objs.list(str(tmp_path))
    assert [o.uri for o in listed] == [str(tmp_path / "a" / "x.jsonl")]
    target = objs.upload(tmp_path / "a" / "x.jsonl", join_uri(str(tmp_path), "out", "y.jsonl"))
    assert (tmp_path / "out" / "y.jsonl").read_text() == "1\n"
    assert objs.list(target)[0].etag == listed[0].etag  # same content, same ETag


def test_errors_are_user_errors(tmp_path):
    with pytest.raises(TagtreeError, match="no such directory"):
        LocalObjects().list(str(tmp_path / "missing"))
    with pytest.raises(TagtreeError, match="not an S3 URI"):
        split_s3("s3:///key")
    assert is_dataset("s3://b/k/data.parquet") and not is_dataset("s3://b/k/_SUCCESS")


def test_an_endpoint_that_never_answers_fails_within_the_timeout(aws_env):
    """objects.timeout_s bounds every attempt: an S3 endpoint that accepts connections and never
    answers fails after 4 attempts of about timeout_s each, not after botocore's 60 s each."""
    import time

    from botocore.exceptions import BotoCoreError

    from tests.support.openai_server import SilentServer

    with SilentServer() as silent:
        endpoint = silent.base_url.removesuffix("/v1")
        store = objects_for("s3://b/k", endpoint_url=endpoint, timeout_s=0.5)
        start = time.monotonic()
        with pytest.raises(BotoCoreError):
            store.head("s3://b/k")
        took = time.monotonic() - start
    assert took < 20, f"{took:.1f} s: the timeout did not bound the attempts"
    assert took >= 4 * 0.5 * 0.9  # it did wait for the answer on each of the 4 attempts
