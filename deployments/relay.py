"""S3 event relay: S3 event notifications (SQS/SNS/EventBridge message JSON) -> the same
`tagtree.object.landed` Prefect event the watch-bucket flow emits.

Self-hosted Prefect has no webhooks, so users whose bucket already sends notifications run

    python -m deployments.relay --queue-url https://sqs.<region>.amazonaws.com/<acct>/<queue>

next to the Prefect server; it long-polls the queue, emits one event per created object and
deletes the message only after the events were sent.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any
from urllib.parse import unquote_plus

import orjson

log = logging.getLogger("tagtree.relay")


def landings_from_message(body: str | bytes | dict) -> list[dict]:
    """Created objects as ``{uri, etag, size}`` from one message body. Understands S3's own
    notification format (``Records``), EventBridge ``Object Created`` events and SNS envelopes
    around either; other events (deletes, test events) give nothing."""
    msg: Any = orjson.loads(body) if isinstance(body, (str, bytes)) else body
    if isinstance(msg, dict) and msg.get("Type") == "Notification" and "Message" in msg:
        return landings_from_message(msg["Message"])  # SNS -> SQS envelope
    out: list[dict] = []
    if isinstance(msg, dict) and msg.get("source") == "aws.s3":
        if msg.get("detail-type") == "Object Created":
            detail = msg.get("detail", {})
            obj = detail.get("object", {})
            out.append(_landing(detail.get("bucket", {}).get("name"), obj.get("key"),
                                obj.get("etag"), obj.get("size"), encoded=False))
    elif isinstance(msg, dict):
        for rec in msg.get("Records", []):
            if not str(rec.get("eventName", "")).startswith("ObjectCreated:"):
                continue
            s3 = rec.get("s3", {})
            obj = s3.get("object", {})
            # S3 notifications URL-encode keys (spaces as '+'); EventBridge does not.
            out.append(_landing(s3.get("bucket", {}).get("name"), obj.get("key"),
                                obj.get("eTag"), obj.get("size"), encoded=True))
    return [o for o in out if o is not None]


def _landing(bucket, key, etag, size, *, encoded: bool) -> dict | None:
    if not bucket or not key or not etag:
        return None
    key = unquote_plus(key) if encoded else key
    return {"uri": f"s3://{bucket}/{key}", "etag": str(etag).strip('"'),
            "size": int(size) if size is not None else None}


def relay_message(body: str | bytes | dict) -> list[dict]:
    """Emit the landing event for every dataset object created in ``body``."""
    from tagtree.io.objectstore import is_dataset
    from tasks.objects import send_landed_event

    sent = []
    for obj in landings_from_message(body):
        if is_dataset(obj["uri"]):
            send_landed_event(obj["uri"], obj["etag"], obj["size"])
            sent.append(obj)
    return sent


def poll_queue(queue_url: str, *, endpoint_url: str | None = None, region: str | None = None,
               once: bool = False, wait_s: int = 20) -> int:
    """Long-poll an SQS queue and relay its messages; returns how many events were sent."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)
    sent = 0
    while True:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                    WaitTimeSeconds=wait_s)
        for message in reply.get("Messages", []):
            try:
                sent += len(relay_message(message["Body"]))
            except orjson.JSONDecodeError:
                log.warning("skipping a message that is not JSON: %s", message["MessageId"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if once:
            return sent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--endpoint-url", help="SQS endpoint (LocalStack, moto, ...)")
    parser.add_argument("--region")
    parser.add_argument("--once", action="store_true", help="one receive, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    n = poll_queue(args.queue_url, endpoint_url=args.endpoint_url, region=args.region,
                   once=args.once)
    log.info("relayed %d events", n)


if __name__ == "__main__":
    main()
