"""Store queries for run bookkeeping: one row per curate/refresh run with config and metrics."""

from __future__ import annotations

import hashlib

import orjson

from tagtree.sanitize import scrub

# Cheap order-free fingerprints (one scan each) of what a stage reads: the Prefect layer's
# cache keys of score and sample (the inputs db/cfg/tree_version do not change with the rows).
_FINGERPRINTS = {
    "datasets": "SELECT count(*), coalesce(bit_xor(hash(name, role)), 0) FROM datasets",
    "sources": "SELECT count(*), coalesce(bit_xor(hash(instance_id, dataset)), 0) "
               "FROM instance_sources",
    "grounding": "SELECT count(*), coalesce(bit_xor(hash(instance_id, node_id, weight)), 0) "
                 "FROM instance_nodes WHERE tree_version = $tv",
    "judgements": "SELECT count(*), coalesce(bit_xor(hash(instance_id, judge, rating)), 0) "
                  "FROM judgements WHERE status = 'ok'",
    "scores": "SELECT count(*), coalesce(bit_xor(hash(instance_id, quality)), 0) FROM scores "
              "WHERE tree_version = $tv",
    "embeddings": "SELECT count(*) FROM instance_embeddings",
}


class RunQueries:
    def content_fingerprint(self, tree_version: str | None, parts: tuple[str, ...]) -> str:
        """A digest of the tables named by ``parts`` (keys of ``_FINGERPRINTS``) on
        ``tree_version`` (the latest when None)."""
        h = hashlib.sha256()
        tv = tree_version or self.latest_tree_version() or ""
        for name in parts:
            sql = _FINGERPRINTS[name]
            params = {"tv": tv} if "$tv" in sql else None
            h.update(repr((name, tv, self.rows(sql, params))).encode())
        return h.hexdigest()[:32]

    def start_run(self, run_id: str, kind: str, config: dict) -> None:
        self.rows(
            "INSERT OR REPLACE INTO runs (run_id, kind, status, started_at, config) "
            "VALUES (?, ?, 'running', current_timestamp, ?)",
            [run_id, kind, orjson.dumps(scrub(config)).decode()],  # no user:pass@ stored
        )

    def interrupt_stale_runs(self) -> int:
        """Mark 'running' rows 'interrupted': call only while holding the store's run lock,
        when no run can be going on (they belong to runs that were killed)."""
        n = self.scalar("SELECT count(*) FROM runs WHERE status = 'running'")
        if n:
            self.run("UPDATE runs SET status = 'interrupted', finished_at = current_timestamp "
                     "WHERE status = 'running'")
        return n

    def finish_run(self, run_id: str, status: str, *, metrics: dict | None = None,
                   timings: dict | None = None, fingerprints: dict | None = None) -> None:
        self.rows(
            "UPDATE runs SET status = ?, finished_at = current_timestamp, metrics = ?, "
            "timings = ?, fingerprints = ? WHERE run_id = ?",
            [status, orjson.dumps(scrub(metrics or {})).decode(),
             orjson.dumps(timings or {}).decode(),
             orjson.dumps(scrub(fingerprints or {})).decode(), run_id],
        )

    def mark_run(self, run_id: str, status: str, only_if: str | None = None) -> bool:
        """Set a run's status (e.g. 'crashed' by a hook after its process died), only while it
        is ``only_if`` when given. True when a row changed."""
        sql = "UPDATE runs SET status = ?, finished_at = current_timestamp WHERE run_id = ?"
        params = [status, run_id]
        if only_if is not None:
            sql += " AND status = ?"
            params.append(only_if)
        return bool(self.rows(sql + " RETURNING run_id", params))

    def runs(self, limit: int = 20) -> list[tuple]:
        return self.rows(
            "SELECT run_id, kind, status, started_at, finished_at FROM runs "
            "ORDER BY started_at DESC LIMIT ?", [limit])
