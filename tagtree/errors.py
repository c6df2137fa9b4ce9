"""Errors a user can cause. The CLI prints these as one clear message, without a traceback."""

from __future__ import annotations

import errno


class TagtreeError(Exception):
    """A problem the user can fix: bad input, a missing model, an incompatible database."""


class StoreBusy(TagtreeError):
    """Another process is writing the store (its run lock or DuckDB's file lock): worth waiting
    a moment for when the other writer only touches the file briefly (landing state)."""


class EndpointError(TagtreeError):
    """The LLM endpoint failed a request after the client's own retries (unreachable, an HTTP
    error): unlike a reply that is not valid JSON, asking again right away will not help."""


class EmbeddingUnavailable(TagtreeError):
    """The embedder could not be built or could not embed (no model, endpoint down): methods
    that need instance vectors are skipped in a comparison instead of failing it."""


# HTTP statuses a later attempt can succeed on, for every client (LLM endpoints, S3, the
# Prefect retry conditions): timeout, conflict, too early, rate limit, and any server error.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or 500 <= status < 600


_FULL = ("no space left on device", "disk quota exceeded")


def disk_full(exc: BaseException) -> bool:
    """``exc`` says the disk (or quota) is full: an OSError with ENOSPC/EDQUOT, or an error of a
    library (DuckDB, pyarrow) whose message says so."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(words in str(exc).lower() for words in _FULL)


def user_message(exc: BaseException) -> str | None:
    """The one-line message the CLI prints for ``exc`` (exit 2), or None for a bug (traceback):
    a TagtreeError, or the disk running full anywhere (the store, shards, outputs)."""
    if isinstance(exc, TagtreeError):
        return str(exc)
    if disk_full(exc):
        where = getattr(exc, "filename", None)
        return (f"disk full{f' writing {where}' if where else ''}: no space left on the device "
                "holding the store or the outputs. Work already written is kept; free space (or "
                "point --db / --out elsewhere) and re-run to resume")
    return None
