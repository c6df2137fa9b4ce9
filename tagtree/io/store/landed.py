"""Store queries of the orchestration stage: landed objects (key + ETag) -> landed_objects.

Status life cycle: 'new' (seen by the watcher) -> 'emitted' (its Prefect event was sent) ->
'processing' -> 'done' | 'failed'. The (uri, etag) key makes recording idempotent: the same
object version is recorded once; a changed object (new ETag) is a new row.

A 'processing' row records its claim: ``claimed_by`` (the on-upload flow run id, or a local id)
and ``claimed_at`` (naive UTC). A claim whose run is gone (crashed, failed, cancelled, unknown to
Prefect) or older than the lease is stale, and the next run takes the object over
(``stale_claim_reason`` decides; ``claim_landed`` takes over only a claim that is unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

# Failed objects are not taken by every later upload run (a bad file would fail them all): the
# watcher puts them back to 'new' while they have attempts left (``requeue_landed``), a
# re-upload (new ETag) or an explicit on-upload run for the object tries again.
PENDING = ("new", "emitted")

# State types of a claiming flow run after which it will never finish its objects. A Completed
# run has finished them (or its leftovers are caught by the lease).
STALE_RUN_STATES = frozenset({"CRASHED", "FAILED", "CANCELLED"})
# What the caller passes as ``run_state`` when Prefect has no flow run with the claimer's id.
RUN_NOT_FOUND = "NOT_FOUND"


def utcnow() -> datetime:
    """Now as naive UTC, the form ``claimed_at`` is stored in."""
    return datetime.now(UTC).replace(tzinfo=None)


def stale_claim_reason(run_state: str | None, age_s: float | None, lease_s: float) -> str | None:
    """Why a 'processing' claim is stale (another run may take the object over), or None.

    ``run_state``: the claiming flow run's Prefect state type ('RUNNING', 'CRASHED', ...),
    ``RUN_NOT_FOUND`` when Prefect has no such run, None when it could not be asked (a local
    claimer, no API). ``age_s``: seconds since the claim; None when no claim was recorded (a row
    left 'processing' before claims were recorded). ``lease_s``: longest a claim is trusted.
    """
    if age_s is None:
        return "no claim recorded"
    if run_state == RUN_NOT_FOUND:
        return "its flow run is not known to Prefect"
    if run_state is not None and run_state.upper() in STALE_RUN_STATES:
        return f"its flow run is {run_state.upper()}"
    if age_s > lease_s:
        return f"claimed {age_s:.0f} s ago, past the {lease_s:.0f} s lease"
    return None


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

    def set_landed_status(self, uri: str, etag: str, status: str,
                          error: str | None = None) -> None:
        """Set a status; back to a pending one the claim is cleared, otherwise it is kept (who
        finished or failed the object). ``error``: why it failed (kept until it is done)."""
        if status in PENDING:
            self.run("UPDATE landed_objects SET status = ?, claimed_by = NULL, claimed_at = NULL "
                     "WHERE uri = ? AND etag = ?", [status, uri, etag])
        else:
            self.run("UPDATE landed_objects SET status = ?, error = CASE WHEN ? = 'done' THEN "
                     "NULL ELSE coalesce(?, error) END WHERE uri = ? AND etag = ?",
                     [status, status, error, uri, etag])

    def mark_emitted(self, uri: str, etag: str) -> None:
        """'new' -> 'emitted' after its event was sent, one more attempt counted; a run that
        claimed the object between the watcher's record and emit steps keeps it (its status
        is no longer 'new')."""
        self.run("UPDATE landed_objects SET status = 'emitted', attempts = attempts + 1 "
                 "WHERE uri = ? AND etag = ? AND status = 'new'", [uri, etag])

    def requeue_landed(self, keys: Sequence[tuple[str, str]], max_attempts: int) -> list[dict]:
        """'failed' objects among ``keys`` with fewer than ``max_attempts`` events sent -> 'new'
        (the watcher sends them again). Returns them with their attempts and last error."""
        out = []
        for uri, etag in keys:
            out += self.rows(
                "UPDATE landed_objects SET status = 'new', claimed_by = NULL, claimed_at = NULL "
                "WHERE uri = ? AND etag = ? AND status = 'failed' AND attempts < ? "
                "RETURNING uri, etag, attempts, error", [uri, etag, max_attempts])
        return [{"uri": u, "etag": e, "attempts": a, "error": err} for u, e, a, err in out]

    def requeue_claims(self, take_over: Sequence[tuple[str, str, str | None]]) -> list[dict]:
        """Each ``(uri, etag, claimer)`` still 'processing' under that same claim -> 'new'."""
        out = []
        for uri, etag, old in take_over:
            out += self.rows(
                "UPDATE landed_objects SET status = 'new', claimed_by = NULL, claimed_at = NULL "
                "WHERE uri = ? AND etag = ? AND status = 'processing' "
                "AND claimed_by IS NOT DISTINCT FROM ? RETURNING uri, etag", [uri, etag, old])
        return [{"uri": u, "etag": e} for u, e in out]

    def landed_with_status(self, statuses: tuple[str, ...], prefix: str = "") -> list[dict]:
        """Object versions in one of ``statuses`` under ``prefix``, oldest first, with the
        number of landing events sent for each so far (``attempts``)."""
        marks = ", ".join("?" for _ in statuses)
        rows = self.rows(
            "SELECT uri, etag, size, status, attempts FROM landed_objects "
            f"WHERE status IN ({marks}) AND starts_with(uri, ?) ORDER BY first_seen, uri",
            [*statuses, prefix])
        return [{"uri": u, "etag": e, "size": s, "status": st, "attempts": a}
                for u, e, s, st, a in rows]

    def landed_status(self, uri: str, etag: str) -> str | None:
        return self.scalar("SELECT status FROM landed_objects WHERE uri = ? AND etag = ?",
                           [uri, etag])

    def landed_claims(self, prefix: str = "") -> list[dict]:
        """The 'processing' objects under ``prefix`` with their claims, oldest first."""
        rows = self.rows(
            "SELECT uri, etag, size, claimed_by, claimed_at FROM landed_objects "
            "WHERE status = 'processing' AND starts_with(uri, ?) ORDER BY first_seen, uri",
            [prefix])
        return [{"uri": u, "etag": e, "size": s, "claimed_by": by, "claimed_at": at}
                for u, e, s, by, at in rows]

    def claim_landed(self, claimer: str, prefix: str = "",
                     take_over: Sequence[tuple[str, str, str | None]] = (),
                     now: datetime | None = None) -> list[dict]:
        """In one transaction, set 'processing' claimed by ``claimer`` on every pending object
        under ``prefix`` and on each ``(uri, etag, old_claimer)`` of ``take_over`` still
        'processing' under that same old claim (a claim changed meanwhile is left alone).
        Returns the objects claimed, oldest first, each with ``taken_over`` (it was
        'processing') and ``claimed_from`` (the old claimer of a taken-over object)."""
        now = now or utcnow()
        marks = ", ".join("?" for _ in PENDING)
        cols = "uri, etag, size, first_seen"
        claimed = []
        with self.transaction():
            for row in self.rows(
                    "UPDATE landed_objects SET status = 'processing', claimed_by = ?, "
                    f"claimed_at = ? WHERE status IN ({marks}) AND starts_with(uri, ?) "
                    f"RETURNING {cols}", [claimer, now, *PENDING, prefix]):
                claimed.append((*row, False, None))
            for uri, etag, old in take_over:
                for row in self.rows(
                        "UPDATE landed_objects SET claimed_by = ?, claimed_at = ? "
                        "WHERE uri = ? AND etag = ? AND status = 'processing' "
                        f"AND claimed_by IS NOT DISTINCT FROM ? RETURNING {cols}",
                        [claimer, now, uri, etag, old]):
                    claimed.append((*row, True, old))
        claimed.sort(key=lambda r: (r[3], r[0]))
        return [{"uri": u, "etag": e, "size": s, "taken_over": over, "claimed_from": old}
                for u, e, s, _, over, old in claimed]

    def release_claims(self, claimer: str, status: str = "new") -> list[dict]:
        """Objects still 'processing' under ``claimer``'s claim -> ``status`` (pending by
        default, so the next run takes them), claim cleared. Returns them."""
        rows = self.rows(
            "UPDATE landed_objects SET status = ?, claimed_by = NULL, claimed_at = NULL "
            "WHERE status = 'processing' AND claimed_by = ? RETURNING uri, etag",
            [status, claimer])
        return [{"uri": u, "etag": e} for u, e in sorted(rows)]
