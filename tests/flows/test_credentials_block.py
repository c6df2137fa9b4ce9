"""`objects.credentials_block`: tasks.objects talks to S3 with the keys of a prefect-aws
AwsCredentials block saved in the test harness's API, not with the environment's.

moto's S3 server runs on loopback with its IAM authentication switched on after setup, so a
request is only served when signed with the access key of an IAM user moto knows: the block holds
that user's key, the environment holds keys moto rejects."""

from __future__ import annotations

import logging
import urllib.request

import boto3
import pytest

pytestmark = pytest.mark.usefixtures("prefect_harness")

BLOCK = "tagtree-test-s3"
BUCKET = "tagtree-creds"
# AWS authorises ListObjectsV2 by s3:ListBucket and HeadObject by s3:GetObject; moto 5.2.6
# checks the operation names instead, so they are allowed too (still read-only).
READ_ONLY_S3 = """{"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket",
                                   "s3:ListObjectsV2", "s3:HeadObject"], "Resource": "*"}]}"""


def _set_moto_auth(endpoint: str, unauthenticated_requests: str) -> None:
    """moto's switch: requests served before IAM authentication starts ('inf': never)."""
    req = urllib.request.Request(f"{endpoint}/moto-api/reset-auth",
                                 data=unauthenticated_requests.encode(), method="POST",
                                 headers={"Content-Type": "text/plain"})  # a form has no body
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@pytest.fixture
def authenticating_s3(monkeypatch):
    """moto's S3 on 127.0.0.1 holding s3://BUCKET/landing/data.jsonl, readable only with the
    returned IAM user's access key; the environment's keys are ones moto does not know."""
    from moto.server import ThreadedMotoServer

    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        iam = boto3.client("iam", endpoint_url=endpoint)
        iam.create_user(UserName="tagtree-reader")
        iam.put_user_policy(UserName="tagtree-reader", PolicyName="read",
                            PolicyDocument=READ_ONLY_S3)
        key = iam.create_access_key(UserName="tagtree-reader")["AccessKey"]
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="landing/data.jsonl",
                      Body=b'{"instruction": "a", "output": "b"}\n')
        s3.put_object(Bucket=BUCKET, Key="landing/_SUCCESS", Body=b"")
        _set_moto_auth(endpoint, "0")  # from now on every request is authenticated
        yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        _set_moto_auth(endpoint, "inf")  # moto's settings are process-wide: back to open
        server.stop()


def test_objects_use_the_credentials_block(authenticating_s3, tmp_path, monkeypatch, caplog,
                                           capsys):
    from botocore.exceptions import ClientError
    from prefect import flow
    from prefect_aws import AwsCredentials

    from tagtree.config import load_config
    from tasks.objects import _objects, conn_of, download_object, list_objects

    endpoint, key_id, secret = authenticating_s3
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="prefect")
    prefix = f"s3://{BUCKET}/landing/"

    # Without the block, boto3's default chain (the environment's keys) is refused.
    monkeypatch.setenv("TAGTREE_OBJECTS_ENDPOINT_URL", endpoint)
    cfg, _ = load_config()
    assert cfg.objects.credentials_block is None
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):
        _objects(prefix, conn_of(cfg)).list(prefix)

    AwsCredentials(aws_access_key_id=key_id, aws_secret_access_key=secret,
                   region_name="us-east-1").save(BLOCK, overwrite=True)
    monkeypatch.setenv("TAGTREE_OBJECTS_CREDENTIALS_BLOCK", BLOCK)
    cfg, sources = load_config()
    conn = conn_of(cfg)
    assert conn["credentials_block"] == BLOCK
    assert sources["objects.credentials_block"] == "env TAGTREE_OBJECTS_CREDENTIALS_BLOCK"
    # The client signs with the block's key, not the environment's.
    assert _objects(prefix, conn).client._request_signer._credentials.access_key == key_id

    @flow
    def fetch(prefix: str, cache_dir: str, conn: dict):
        listed = list_objects(prefix, conn)
        return listed, [download_object(o["uri"], o["etag"], cache_dir, conn) for o in listed]

    listed, local = fetch(prefix, str(tmp_path / "cache"), conn)
    assert [o["uri"] for o in listed] == [f"{prefix}data.jsonl"]  # _SUCCESS is not a dataset
    assert open(local[0]).read() == '{"instruction": "a", "output": "b"}\n'

    out = capsys.readouterr()
    for text in (caplog.text, out.out, out.err):
        assert secret not in text
