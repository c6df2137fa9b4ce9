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


def test_claims_are_recorded_taken_over_only_unchanged_and_released(store):
    from datetime import timedelta

    from tagtree.io.store.landed import stale_claim_reason, utcnow

    for name in ("a", "b", "c"):
        store.record_landed(f"s3://b/{name}.jsonl", "e1", 1)
    store.set_landed_status("s3://b/c.jsonl", "e1", "emitted")
    claimed = store.claim_landed("run-1", "s3://b/")
    assert [(o["uri"], o["taken_over"]) for o in claimed] == [
        ("s3://b/a.jsonl", False), ("s3://b/b.jsonl", False), ("s3://b/c.jsonl", False)]
    claims = store.landed_claims("s3://b/")
    assert {c["claimed_by"] for c in claims} == {"run-1"}
    age = (utcnow() - claims[0]["claimed_at"]).total_seconds()
    assert 0 <= age < 60  # claimed_at is naive UTC, as utcnow() is
    assert store.claim_landed("run-2", "s3://b/") == []  # nothing pending, no take-over asked

    # run-1 died long ago: its claim on a.jsonl is past a 1-hour lease.
    store.run("UPDATE landed_objects SET claimed_at = ? WHERE uri = 's3://b/a.jsonl'",
              [utcnow() - timedelta(hours=2)])
    stale = [c for c in store.landed_claims("s3://b/")
             if stale_claim_reason("RUNNING", (utcnow() - c["claimed_at"]).total_seconds(),
                                   3600)]
    assert [c["uri"] for c in stale] == ["s3://b/a.jsonl"]
    taken = store.claim_landed("run-2", "s3://b/", [(c["uri"], c["etag"], c["claimed_by"])
                                                    for c in stale]
                               + [("s3://b/b.jsonl", "e1", "run-0")])  # not run-0's claim
    assert [(o["uri"], o["taken_over"], o["claimed_from"]) for o in taken] == [
        ("s3://b/a.jsonl", True, "run-1")]
    by = dict(store.rows("SELECT uri, claimed_by FROM landed_objects"))
    assert by == {"s3://b/a.jsonl": "run-2", "s3://b/b.jsonl": "run-1",
                  "s3://b/c.jsonl": "run-1"}

    # run-1 crashed and its hook releases what it still holds; finished objects keep theirs.
    store.set_landed_status("s3://b/c.jsonl", "e1", "done")
    assert store.release_claims("run-1") == [{"uri": "s3://b/b.jsonl", "etag": "e1"}]
    assert store.landed_status("s3://b/b.jsonl", "e1") == "new"
    assert store.rows("SELECT claimed_by, claimed_at FROM landed_objects "
                      "WHERE uri = 's3://b/b.jsonl'") == [(None, None)]
    assert store.scalar("SELECT claimed_by FROM landed_objects "
                        "WHERE uri = 's3://b/c.jsonl'") == "run-1"
    assert store.release_claims("run-1") == []
    assert [o["uri"] for o in store.claim_landed("run-3", "s3://b/")] == ["s3://b/b.jsonl"]


V1_LANDED_OBJECTS = """
    CREATE TABLE IF NOT EXISTS landed_objects (
        uri VARCHAR NOT NULL, etag VARCHAR NOT NULL, size BIGINT, status VARCHAR NOT NULL,
        first_seen TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (uri, etag))"""


def test_a_version_1_database_gains_the_claim_columns_on_open(db_path):
    import duckdb

    from tagtree.io.store import SCHEMA_VERSION, TABLES, Store
    from tagtree.io.store.landed import stale_claim_reason

    # A database as tagtree wrote it at schema version 1, with an object left 'processing'.
    con = duckdb.connect(db_path)
    for name, ddl in TABLES.items():
        con.execute(V1_LANDED_OBJECTS if name == "landed_objects" else ddl)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("INSERT INTO landed_objects (uri, etag, size, status) VALUES "
                "('s3://b/x.jsonl', 'e1', 5, 'processing'), ('s3://b/y.jsonl', 'e1', 6, 'done')")
    con.close()

    with Store(db_path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        cols = [r[0] for r in store.rows(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'landed_objects' ORDER BY ordinal_position")]
        assert cols[-4:] == ["claimed_by", "claimed_at", "attempts", "error"]
        # Version 3: existing rows start with no landing event counted and no error.
        assert store.rows("SELECT DISTINCT attempts, error FROM landed_objects") == [(0, None)]
        assert store.landed_status("s3://b/y.jsonl", "e1") == "done"
        [left] = store.landed_claims()
        assert (left["uri"], left["claimed_by"], left["claimed_at"]) == (
            "s3://b/x.jsonl", None, None)
        # Left 'processing' by a pre-upgrade run: no claim recorded, so it is stale.
        assert stale_claim_reason(None, None, 3600) == "no claim recorded"
        taken = store.claim_landed("run-new", "", [("s3://b/x.jsonl", "e1", None)])
        assert [(o["uri"], o["claimed_from"]) for o in taken] == [("s3://b/x.jsonl", None)]
    with Store(db_path) as store:  # opening again migrates nothing twice
        assert store.landed_claims()[0]["claimed_by"] == "run-new"


def test_emitting_does_not_undo_a_claim_made_meanwhile(store):
    """The watcher records an object, an on-upload run claims it before the watcher's emit step
    marks it: the claim stands (otherwise the object would be curated twice)."""
    store.record_landed("s3://b/in/a.jsonl", "e1", 10)
    store.record_landed("s3://b/in/b.jsonl", "e2", 10)
    store.claim_landed("run-1", prefix="s3://b/in/a")
    store.mark_emitted("s3://b/in/a.jsonl", "e1")
    store.mark_emitted("s3://b/in/b.jsonl", "e2")
    assert store.landed_status("s3://b/in/a.jsonl", "e1") == "processing"
    assert store.landed_status("s3://b/in/b.jsonl", "e2") == "emitted"
