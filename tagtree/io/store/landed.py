"""Store queries of the orchestration stage: landed objects (key + ETag) -> landed_objects.

Status life cycle: 'new' (seen by the watcher) -> 'emitted' (its Prefect event was sent) ->
'processing' -> 'done' | 'failed'. The (uri, etag) key makes recording idempotent: the same
object version is recorded once; a changed object (new ETag) is a new row.
"""

from __future__ import annotations

# Failed objects are not retried by every later upload run (a bad file would fail them all):
# re-upload it (new ETag) or run on-upload for it explicitly.
PENDING = ("new", "emitted")


class LandedQueries:
    def record_landed(self, uri: str, etag: str, size: int | None) -> bool:
        """Record one object version; True when it was not seen before."""
        with self._lock:
            before = self.scalar(
                "SELECT count(*) FROM landed_objects WHERE uri = ? AND etag = ?", [uri, etag])
            if before:
                return False
            self.run("INSERT OR IGNORE INTO landed_objects (uri, etag, size, status) "
                     "VALUES (?, ?, ?, 'new')", [uri, etag, size])
            return True

    def set_landed_status(self, uri: str, etag: str, status: str) -> None:
        self.run("UPDATE landed_objects SET status = ? WHERE uri = ? AND etag = ?",
                 [status, uri, etag])

    def landed_with_status(self, statuses: tuple[str, ...], prefix: str = "") -> list[dict]:
        """Object versions in one of ``statuses`` under ``prefix``, oldest first."""
        marks = ", ".join("?" for _ in statuses)
        rows = self.rows(
            f"SELECT uri, etag, size, status FROM landed_objects WHERE status IN ({marks}) "
            "AND starts_with(uri, ?) ORDER BY first_seen, uri", [*statuses, prefix])
        return [{"uri": u, "etag": e, "size": s, "status": st} for u, e, s, st in rows]

    def landed_status(self, uri: str, etag: str) -> str | None:
        return self.scalar("SELECT status FROM landed_objects WHERE uri = ? AND etag = ?",
                           [uri, etag])
