"""Shared task policies (orchestration stage): caching, transient retries, LLM concurrency.

Apply to a stage's task like::

    @task(name="annotate", tags=[LLM_TAG], timeout_seconds=4 * 3600,
          **cached("annotate-1"), **TRANSIENT_RETRIES)
    def annotate(db: str, pool_hash: str, cfg: dict) -> dict: ...

Caching keys on the task's inputs (pass content hashes and config dicts, never connections),
the task's source and an explicit algorithm version: ``TASK_SOURCE`` cannot see changes inside
the ``tagtree`` core, so bump the version string whenever the core algorithm changes. Results are
persisted (JSON) so a cache hit in a later run finds them; Prefect's default storage is
``~/.prefect/storage`` (``PREFECT_LOCAL_STORAGE_PATH``), which outlives runs and processes.

Which stages keep a Prefect cache, and why. The store is content-addressed already (annotations
keyed by tagger fingerprint, trees by version, embeddings by embedder): a Prefect cache is kept
only where it buys the UI's Cached state for an identical re-run, which then also skips opening
the stage at all.

- annotate (``PendingAnnotations``), ground (``AnnotationsContent``), score (``StoreContent``):
  kept. Each runs on every identical curate run; Cached there means no LLM request, no
  regrounding, no rescoring, and the flow test asserts it. Their content key plus
  ``StoreIdentity`` (a deleted and recreated file must be curated again) read the store.
- build-tree: dropped. An identical run never calls it (the data is grounded on the current
  tree) and a build matching an existing version reuses it from the store.
- sample: dropped. ``run_id`` is an input, new per flow run, so the cache could never hit; its
  key still read a fingerprint of grounding, scores and embeddings on every call.
- ingest, export, report, embed and the object tasks: never cached (cheap, idempotent, or
  must notice changed files).
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

# Tag carried by every task that calls an LLM. A tag-based concurrency limit on it caps requests
# across all flows sharing a server: `prefect concurrency-limit create tagtree-llm 4`.
LLM_TAG = "tagtree-llm"


@dataclass
class AlgorithmVersion(CachePolicy):
    """Cache key part naming the version of the core algorithm a task wraps."""

    version: str = "0"

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str:
        return f"algorithm={self.version}"


@dataclass
class StoreIdentity(CachePolicy):
    """Cache key part: the id of the store file the task writes into (``meta.store_id``). A
    cached stage's real output is rows in that store: after the file is deleted and made again
    (same path, same input data, same content digests) the old results are not there, so the
    stage must run again rather than come back Cached."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        if "db" not in inputs:
            return None
        from tagtree.io.store import Store

        try:
            with Store(inputs["db"]) as store:
                return f"store={store.store_id()}"
        except Exception:  # noqa: BLE001 - unreadable now: never match an earlier result
            return f"store=unreadable-{uuid.uuid4().hex}"


def stage_cache_policy(algorithm_version: str) -> CachePolicy:
    """INPUTS + TASK_SOURCE + the explicit algorithm version + the store's identity (no run id:
    reused across runs on the same store)."""
    return (INPUTS + TASK_SOURCE + AlgorithmVersion(version=str(algorithm_version))
            + StoreIdentity())


def cached(algorithm_version: str, content: CachePolicy | None = None) -> dict[str, Any]:
    """Task options for a cached, expensive stage: the policy (plus ``content``, the key part
    naming what the stage reads from the store) and persisted JSON results."""
    policy = stage_cache_policy(algorithm_version)
    return {
        "cache_policy": policy + content if content is not None else policy,
        "persist_result": True,
        "result_serializer": "json",  # summaries are small JSON-able dicts; readable on disk
    }


# -- transient faults -------------------------------------------------------------------------
_TRANSIENT_S3_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                       "InternalError", "ServiceUnavailable", "RequestTimeTooSkewed"}


def is_transient(exc: BaseException | None) -> bool:
    """True for faults that a later attempt can succeed on: network errors, timeouts, HTTP
    408/429/5xx from an LLM endpoint, S3 throttling/5xx. User errors and bugs are permanent."""
    seen = set()
    while exc is not None and id(exc) not in seen:  # look through wrapped causes
        seen.add(id(exc))
        if _is_transient_one(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _is_transient_one(exc: BaseException) -> bool:
    from tagtree.errors import TagtreeError, retryable_status

    if isinstance(exc, TagtreeError):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
        return True
    status = getattr(exc, "status_code", None)  # openai.APIStatusError, httpx errors
    if isinstance(status, int):
        return retryable_status(status)
    try:
        import openai

        if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
            return True
    except ImportError:  # pragma: no cover - openai is a dependency
        pass
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        from botocore.exceptions import ClientError, ReadTimeoutError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        if isinstance(exc, (BotoConnectionError, ReadTimeoutError)):
            return True
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = err.get("Code", "")
            http = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return code in _TRANSIENT_S3_CODES or retryable_status(http)
    except ImportError:  # pragma: no cover
        pass
    return False


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the failure is transient."""
    try:
        exc = state.result(raise_on_failure=False)
    except BaseException as raised:  # noqa: BLE001 - some states re-raise instead
        exc = raised
    return isinstance(exc, BaseException) and is_transient(exc)


def is_user_error(exc: BaseException) -> bool:
    """A failure no retry can heal: a ``TagtreeError`` (bad, missing or unreadable input, bad
    config), or the OS saying the path is missing, a directory, forbidden, or the disk full."""
    import errno

    from tagtree.errors import user_message

    permanent = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM,
                 errno.ENOSPC, errno.EDQUOT, errno.ELOOP, errno.ENAMETOOLONG}
    return user_message(exc) is not None or (isinstance(exc, OSError)
                                             and exc.errno in permanent)


def retry_unless_user_error(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn`` for local work (ingest): retry anything but user errors;
    a missing or bad file failed at once instead of after the retry delay."""
    try:
        exc = state.result(raise_on_failure=False)
    except BaseException as raised:  # noqa: BLE001 - some states re-raise instead
        exc = raised
    return isinstance(exc, BaseException) and not is_user_error(exc)


# Object-store calls ride out an outage of minutes (an endpoint restarting, a network blip):
# 2 + 5 + 10 + 20 + 30 + 60 + 60 + 60 s = ~4 min of retries on top of boto3's own attempts.
S3_RETRY_DELAYS = [2, 5, 10, 20, 30, 60, 60, 60]
S3_RETRIES: dict[str, Any] = {
    "retries": len(S3_RETRY_DELAYS),
    "retry_delay_seconds": S3_RETRY_DELAYS,
    "retry_jitter_factor": 0.2,
    "retry_condition_fn": retry_if_transient,
}

TRANSIENT_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),  # 2, 4, 8 s
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}


# -- artifact keys ----------------------------------------------------------------------------
def artifact_key(base: str, cfg: dict | None = None) -> str:
    """``base`` suffixed with the run's datasets (``sample.pool``), as a valid Prefect artifact
    key (lowercase letters, digits, dashes): each dataset's runs keep their own artifact history
    instead of all datasets sharing one key."""
    import hashlib
    import re

    pool = ((cfg or {}).get("sample") or {}).get("pool") or []
    if not pool:
        return base
    label = "+".join(sorted(pool))
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    if len(slug) > 48:  # keys stay short; a digest keeps long names apart
        slug = slug[:36].rstrip("-") + "-" + hashlib.sha256(label.encode()).hexdigest()[:10]
    return f"{base}-{slug}" if slug else base
