"""The S3 event relay's message parsing: S3 notifications, EventBridge, SNS envelopes."""

from __future__ import annotations

import orjson
import pytest

from deployments.relay import landings_from_message

S3_NOTIFICATION = {"Records": [
    {"eventName": "ObjectCreated:Put",
     "s3": {"bucket": {"name": "data"},
            "object": {"key": "landing/my+file%281%29.jsonl", "eTag": "abc", "size": 12}}},
    {"eventName": "ObjectRemoved:Delete",
     "s3": {"bucket": {"name": "data"}, "object": {"key": "landing/old.jsonl"}}},
]}
EVENTBRIDGE = {"source": "aws.s3", "detail-type": "Object Created",
               "detail": {"bucket": {"name": "data"},
                          "object": {"key": "landing/my file.jsonl", "etag": "def", "size": 5}}}


@pytest.mark.parametrize("body, expected", [
    (S3_NOTIFICATION, [{"uri": "s3://data/landing/my file(1).jsonl", "etag": "abc", "size": 12}]),
    (orjson.dumps(S3_NOTIFICATION).decode(),
     [{"uri": "s3://data/landing/my file(1).jsonl", "etag": "abc", "size": 12}]),
    (EVENTBRIDGE, [{"uri": "s3://data/landing/my file.jsonl", "etag": "def", "size": 5}]),
    ({"Type": "Notification", "Message": orjson.dumps(EVENTBRIDGE).decode()},
     [{"uri": "s3://data/landing/my file.jsonl", "etag": "def", "size": 5}]),
    ({"Service": "Amazon S3", "Event": "s3:TestEvent"}, []),
    (EVENTBRIDGE | {"detail-type": "Object Deleted"}, []),
])
def test_landings_from_message(body, expected):
    assert landings_from_message(body) == expected
