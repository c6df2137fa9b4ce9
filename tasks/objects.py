"""Object tasks (orchestration stage): bucket prefix -> landed_objects, landing events, local
copies of s3:// inputs, outputs uploaded under a prefix.

``conn`` is the JSON-able ``objects`` config section (endpoint_url, region, credentials_block):
tasks pass names, never clients. S3/network calls retry only on transient faults.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from tagtree.errors import StoreBusy, TagtreeError
from tagtree.io.objectstore import DEFAULT_TIMEOUT_S, cache_path, is_dataset, is_s3, objects_for
from tagtree.io.store import Store
from tagtree.io.store.landed import RUN_NOT_FOUND, stale_claim_reason, utcnow
from tasks.policies import S3_RETRIES

LANDED_EVENT = "tagtree.object.landed"
# Fixed namespace: the same (uri, etag, attempt) always gives the same event id (the server
# stores an event id once, so a landing re-emitted by a retried poll is not a second event);
# the watcher's next attempt for a crashed or failed object gets a new id.
_EVENT_NS = uuid.UUID("6f1c1d55-4c1e-4d39-9a57-2f7d1c3e8a10")


def _objects(uri: str, conn: dict | None):
    conn = conn or {}
    session = None
    if conn.get("credentials_block") and is_s3(uri):
        try:
            from prefect_aws import AwsCredentials
        except ImportError:
            raise TagtreeError("objects.credentials_block needs prefect-aws: "
                               "pip install 'tagtree[s3]'") from None
        session = AwsCredentials.load(conn["credentials_block"]).get_boto3_session()
    return objects_for(uri, endpoint_url=conn.get("endpoint_url"), region=conn.get("region"),
                       session=session, timeout_s=conn.get("timeout_s", DEFAULT_TIMEOUT_S))


@contextmanager
def state_store(path: str, wait_s: float = 60.0):
    """Open the landing-state DuckDB, waiting while another process holds its lock (the watcher
    and on-upload runs touch it for milliseconds each)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            store = Store(path)
            break
        except StoreBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        yield store
    finally:
        store.close()


def landing_event_id(uri: str, etag: str, attempt: int = 0) -> uuid.UUID:
    """Attempt 0 is the first landing (also the relay's); each later attempt its own id."""
    return uuid.uuid5(_EVENT_NS, f"{uri}\0{etag}" + (f"\0{attempt}" if attempt else ""))


def send_landed_event(uri: str, etag: str, size: int | None = None, attempt: int = 0):
    """The landing event the on-upload trigger waits for (also sent by deployments/relay.py)."""
    return emit_event(
        event=LANDED_EVENT,
        resource={"prefect.resource.id": f"tagtree.object.{uri}",
                  "prefect.resource.name": uri.rsplit("/", 1)[-1],
                  "tagtree.uri": uri, "tagtree.etag": etag},
        payload={"uri": uri, "etag": etag, "size": size, "attempt": attempt},
        id=landing_event_id(uri, etag, attempt),
    )


@task(name="list-objects", cache_policy=NO_CACHE, timeout_seconds=600, **S3_RETRIES)
def list_objects(prefix: str, conn: dict | None = None) -> list[dict]:
    """Dataset objects under a prefix as ``{uri, etag, size}`` (other files are ignored)."""
    return [o.to_dict() for o in _objects(prefix, conn).list(prefix) if is_dataset(o.uri)]


@task(name="record-landings", cache_policy=NO_CACHE, timeout_seconds=300)
def record_landings(state_db: str, objects: list[dict]) -> list[dict]:
    """Record object versions by key + ETag; return those whose event is still to be sent
    (new now, or recorded by an earlier poll that stopped before emitting)."""
    with state_store(state_db) as store:
        for obj in objects:
            store.record_landed(obj["uri"], obj["etag"], obj.get("size"))
        wanted = {(o["uri"], o["etag"]) for o in objects}
        return [o for o in store.landed_with_status(("new",)) if (o["uri"], o["etag"]) in wanted]


@task(name="requeue-landings", cache_policy=NO_CACHE, timeout_seconds=300)
def requeue_landings(state_db: str, objects: list[dict], max_attempts: int = 3,
                     lease_s: float = 6 * 3600.0) -> list[dict]:
    """Objects still listed that no run will finish -> 'new', so this poll sends their event
    again (with a fresh id): those left 'processing' by a run that crashed, failed, was
    cancelled or is unknown to Prefect (or past the lease), and 'failed' ones with attempts
    left (a transient fault outlived the run's retries). Returns them."""
    listed = {(o["uri"], o["etag"]) for o in objects}
    with state_store(state_db) as store:
        claims = [c for c in store.landed_claims() if (c["uri"], c["etag"]) in listed]
    states = claimer_run_states({c["claimed_by"] for c in claims})
    now, stale = utcnow(), []
    for c in claims:
        age = (now - c["claimed_at"]).total_seconds() if c["claimed_at"] else None
        reason = stale_claim_reason(states.get(c["claimed_by"]), age, lease_s)
        if reason:
            stale.append(((c["uri"], c["etag"], c["claimed_by"]), reason))
    logger = get_run_logger()
    with state_store(state_db) as store:
        back = store.requeue_claims([key for key, _ in stale])
        failed = store.requeue_landed(sorted(listed), max_attempts)
    reasons = {(k[0], k[1]): why for k, why in stale}
    for obj in back:
        logger.warning("%s (etag %s) is curated again: its run %s", obj["uri"], obj["etag"],
                       reasons[(obj["uri"], obj["etag"])])
    for obj in failed:
        logger.warning("%s (etag %s) failed (%s): trying again, attempt %d of %d", obj["uri"],
                       obj["etag"], obj["error"] or "no reason recorded", obj["attempts"] + 1,
                       max_attempts)
    return back + failed


@task(name="emit-landing-events", cache_policy=NO_CACHE, timeout_seconds=300)
def emit_landing_events(state_db: str, landed: list[dict]) -> int:
    """One Prefect event per landed object version and attempt, then mark it 'emitted'."""
    for obj in landed:
        send_landed_event(obj["uri"], obj["etag"], obj.get("size"), int(obj.get("attempts") or 0))
        with state_store(state_db) as store:
            store.mark_emitted(obj["uri"], obj["etag"])
    return len(landed)


def claimer_id() -> str:
    """Who claims: the current Prefect flow run's id, or a local id outside a flow run."""
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return str(run_id) if run_id else f"local:{socket.gethostname()}:{os.getpid()}"


def claimer_run_states(claimers: set[str]) -> dict[str, str | None]:
    """Each claimer's flow run state type as Prefect reports it, ``RUN_NOT_FOUND`` for a run id
    Prefect does not know, None when it cannot tell (a local claimer; the API unreachable)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    out: dict[str, str | None] = dict.fromkeys(claimers)
    run_ids = {}
    for claimer in claimers:
        try:
            run_ids[claimer] = uuid.UUID(claimer)
        except ValueError:
            pass  # a local claimer: only the lease can tell it is stale
    if not run_ids:
        return out
    try:
        with get_client(sync_client=True) as client:
            for claimer, run_id in run_ids.items():
                try:
                    state = client.read_flow_run(run_id).state
                except ObjectNotFound:
                    out[claimer] = RUN_NOT_FOUND
                else:
                    out[claimer] = state.type.value if state else None
    except Exception as exc:  # no API: the lease alone decides; the next run asks again
        get_run_logger().warning("cannot read claiming flow runs from Prefect (%s: %s); "
                                 "only the lease decides", type(exc).__name__, exc)
    return out


@task(name="claim-pending", cache_policy=NO_CACHE, timeout_seconds=300)
def claim_pending(state_db: str, prefix: str = "", uri: str | None = None,
                  etag: str | None = None, lease_s: float = 6 * 3600.0) -> list[dict]:
    """Landed objects still to curate (a trigger passes only its first event: the run takes all
    pending ones), claimed for this flow run. The triggering object is recorded first, so a
    relay event needs no watcher. Objects left 'processing' by a run that will never finish them
    (crashed, failed, cancelled, unknown to Prefect, or claimed longer than ``lease_s`` ago) are
    taken over too; so are this run's own claims (a retry of the run)."""
    me = claimer_id()
    with state_store(state_db) as store:
        if uri and etag and not store.record_landed(uri, etag, None):
            if store.landed_status(uri, etag) == "failed":  # asked for again: try again
                store.set_landed_status(uri, etag, "new")
        claims = store.landed_claims(prefix)
    # Prefect is asked with the state file closed: the watcher never waits on the API.
    states = claimer_run_states({c["claimed_by"] for c in claims
                                 if c["claimed_by"] not in (None, me)})
    now, take_over, reasons = utcnow(), [], {}
    for c in claims:
        age = (now - c["claimed_at"]).total_seconds() if c["claimed_at"] else None
        reason = ("this run's own claim" if c["claimed_by"] == me
                  else stale_claim_reason(states.get(c["claimed_by"]), age, lease_s))
        if reason:
            take_over.append((c["uri"], c["etag"], c["claimed_by"]))
            reasons[(c["uri"], c["etag"])] = reason
    with state_store(state_db) as store:
        claimed = store.claim_landed(me, prefix, take_over, now=now)
    logger = get_run_logger()
    for obj in claimed:
        if obj["taken_over"] and obj["claimed_from"] != me:
            logger.warning("reclaimed %s (etag %s) from stale run %s: %s", obj["uri"],
                           obj["etag"], obj["claimed_from"], reasons[(obj["uri"], obj["etag"])])
    return claimed


def release_claims(state_db: str, claimer: str) -> list[dict]:
    """This claimer's objects still 'processing' -> 'new' (the next run takes them)."""
    with state_store(state_db) as store:
        return store.release_claims(claimer)


@task(name="mark-landed", cache_policy=NO_CACHE, timeout_seconds=300)
def mark_landed(state_db: str, uri: str, etag: str, status: str,
                error: str | None = None) -> str:
    with state_store(state_db) as store:
        store.set_landed_status(uri, etag, status, error)
    return status


@task(name="resolve-etag", cache_policy=NO_CACHE, timeout_seconds=600, **S3_RETRIES)
def resolve_etag(uri: str, conn: dict | None = None) -> str:
    """The current ETag of ``uri`` (an on-upload run started by hand names only the object)."""
    return _objects(uri, conn).head(uri).etag


@task(name="download-object", cache_policy=NO_CACHE, timeout_seconds=3600, **S3_RETRIES)
def download_object(uri: str, etag: str, cache_dir: str, conn: dict | None = None) -> str:
    """A local path for ``uri``: s3:// objects are copied once per (key, ETag)."""
    if not is_s3(uri):
        return str(_objects(uri, conn).download(uri, Path(uri)))
    dest = cache_path(cache_dir, uri, etag)
    if not dest.exists():
        _objects(uri, conn).download(uri, dest)
    return str(dest)


@task(name="upload-outputs", cache_policy=NO_CACHE, timeout_seconds=3600, **S3_RETRIES)
def upload_outputs(local_dir: str, prefix: str, conn: dict | None = None) -> list[str]:
    """Upload every file under ``local_dir`` to ``prefix`` keeping relative paths."""
    root = Path(local_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    target = _objects(prefix, conn)
    return [target.upload(p, prefix.rstrip("/") + "/" + p.relative_to(root).as_posix())
            for p in files]


def conn_of(cfg) -> dict:
    """The JSON-able connection settings of a Config's ``objects`` section."""
    return cfg.objects.model_dump(include={"endpoint_url", "region", "credentials_block",
                                           "timeout_s"})
