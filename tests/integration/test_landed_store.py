"""landed_objects queries on a real DuckDB file: idempotent recording by key + ETag."""

from __future__ import annotations


def test_record_is_idempotent_and_etag_changes_are_new(store):
    assert store.record_landed("s3://b/x.jsonl", "e1", 10) is True
    assert store.record_landed("s3://b/x.jsonl", "e1", 10) is False
    assert store.record_landed("s3://b/x.jsonl", "e2", 11) is True
    assert [o["etag"] for o in store.landed_with_status(("new",))] == ["e1", "e2"]
    store.set_landed_status("s3://b/x.jsonl", "e1", "done")
    assert store.landed_status("s3://b/x.jsonl", "e1") == "done"
    assert [o["etag"] for o in store.landed_with_status(("new",), "s3://b/")] == ["e2"]
    assert store.landed_with_status(("new",), "s3://other/") == []
