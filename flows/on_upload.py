"""The `on-upload` flow: curate newly landed objects and write each selection and report back
under the output prefix. Started by the landing-event trigger; it takes every pending object, not
only the triggering one (a trigger passes only the first event's context).

Crash recovery: each object taken is claimed for this flow run. When the run crashes or is
cancelled, its hooks put its unfinished objects back to 'new' (a serving runner runs them too when
the run's process is SIGKILLed); when no hook runs (an unsupervised process killed, the serving
process or machine lost), the next run takes them over once Prefect reports the claiming run
Crashed/Failed/Cancelled or unknown, or once the claim is older than ``objects.claim_lease_s``."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.logging.loggers import flow_run_logger

from flows.curate import curate
from flows.logs import user_error
from flows.runners import with_runner
from tagtree.config import load_config
from tagtree.errors import TagtreeError
from tagtree.io.objectstore import join_uri, object_label, object_version
from tasks.objects import (
    claim_pending,
    conn_of,
    download_object,
    mark_landed,
    release_claims,
    resolve_etag,
)


def output_location(output_prefix: str, uri: str, etag: str, prefix: str = "") -> str:
    """Where one object version's outputs go: ``<output prefix>/<key path>/<version>/``. The
    key path (below the watched prefix, data suffix dropped) keeps ``a/data.jsonl`` and
    ``b/data.jsonl`` apart; the version (from the ETag) keeps a changed object's outputs next
    to the earlier ones. The same object version always gets the same place (a re-run
    replaces its own files only)."""
    return join_uri(output_prefix, object_label(uri, prefix), object_version(etag))


def dataset_of(uri: str, etag: str, prefix: str = "") -> str:
    """The store's dataset name of one object version: its key path and version, so a run
    selects from exactly the rows of the object it was started for."""
    return f"{object_label(uri, prefix)}@{object_version(etag)}"


def curate_objects(objects: list[dict], prefix: str, out: str, cfg, *, target: str | None,
                   config_path: str | None, overrides: dict[str, Any],
                   pool_with: list[str] | None, meta: dict[str, Any]) -> dict:
    """The body on-upload (one object a run) and refresh (every object under the prefix in one
    run) share: download ``objects`` ({uri, etag}) once per version, curate them -- each named
    by its key path and version -- into ``out``; returns the curate flow's result."""
    conn = conn_of(cfg)
    local = [download_object(o["uri"], o["etag"], cfg.objects.cache_dir, conn) for o in objects]
    return with_runner(curate, cfg.runner)(
        inputs=local, target=target, db=cfg.store.db, config_path=config_path,
        overrides=overrides, out=out,
        datasets=[dataset_of(o["uri"], o["etag"], prefix) for o in objects],
        pool_with=pool_with, meta=meta)


def release_run_claims(flow, flow_run, state) -> None:
    """on_crashed / on_cancellation hook: this run's objects still 'processing' -> 'new', so
    the watcher's next poll sends them again; its curate subflows still Running are marked
    as this run ended (in Prefect and in the store's ``runs``). Runs in the flow's process, or
    in the serving runner's when the flow's process died; when neither survives, the watcher's
    and claim-pending's stale-claim checks take the objects over."""
    params = flow_run.parameters or {}
    cfg, _ = load_config(params.get("config_path"), (params.get("overrides") or {})
                         | {"store.db": params.get("db")})
    released = release_claims(cfg.objects.state_db, str(flow_run.id))
    logger = flow_run_logger(flow_run, flow)
    for obj in released:
        logger.warning("run %s is %s: %s (etag %s) is 'new' again for the next poll",
                       flow_run.id, state.name, obj["uri"], obj["etag"])
    for child in end_subflows(flow_run.id, state):
        logger.warning("curate subflow %s marked %s", child, state.name)
        try:
            from tagtree.io.store import Store

            with Store(cfg.store.db) as store:
                store.mark_run(child, state.name.lower(), only_if="running")
        except Exception as exc:  # noqa: BLE001 - the store may be gone or locked
            logger.warning("could not mark run %s in %s: %s", child, cfg.store.db, exc)


def end_subflows(parent_id, state) -> list[str]:
    """Set every subflow of flow run ``parent_id`` that is not finished to a copy of
    ``state`` (Crashed/Cancelled): a killed process leaves its subflows Running forever."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.states import State

    ended = []
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])))
        for child in children:
            if child.state is None or child.state.is_final():
                continue
            client.set_flow_run_state(child.id, State(type=state.type, name=state.name,
                                                      message=f"its parent run {parent_id} "
                                                              f"is {state.name}"), force=True)
            ended.append(str(child.id))
    return ended


@flow(name="on-upload", log_prints=False, on_crashed=[release_run_claims],
      on_cancellation=[release_run_claims])
def on_upload(
    uri: str,
    etag: str = "",
    prefix: str = "",
    output_prefix: str | None = None,
    target: str | None = None,
    db: str | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    pool_with: list[str] | None = None,
) -> dict:
    """Curate the landed dataset `uri` (and any other pending one under `prefix`, the watched
    prefix); each object version's selection, manifest, report and summary.json go to
    `output_prefix`/<key path below prefix>/<version>/. Each selection draws from its own
    object (plus the stored datasets named in `pool_with`), over the store's one tree. Without
    `etag`, the object's current ETag is read from the store."""
    logger = get_run_logger()
    overrides = overrides or {}
    cfg, _ = load_config(config_path, overrides | {"store.db": db,
                                                   "objects.output_prefix": output_prefix})
    conn, state_db = conn_of(cfg), cfg.objects.state_db
    if uri and not etag:
        etag = resolve_etag(uri, conn)
        logger.info("%s has ETag %s", uri, etag)
    done, failed = [], []
    for obj in claim_pending(state_db, prefix, uri or None, etag or None,
                             cfg.objects.claim_lease_s):
        out = output_location(cfg.objects.output_prefix, obj["uri"], obj["etag"], prefix)
        try:
            result = curate_objects([obj], prefix, out, cfg, target=target,
                                    config_path=config_path, overrides=overrides,
                                    pool_with=pool_with,
                                    meta={"uri": obj["uri"], "etag": obj["etag"]})
            mark_landed(state_db, obj["uri"], obj["etag"], "done")
            done.append({"uri": obj["uri"], "etag": obj["etag"], "out": out,
                         "outputs": result["outputs"]})
            logger.info("curated %s -> %s: selected %s of %s on tree %s", obj["uri"], out,
                        result["sample"]["selected"], result["sample"]["pool"],
                        result["tree_version"])
        except Exception as exc:  # one bad object must not strand the others
            err = user_error(exc)
            reason = str(err) if err else f"{type(exc).__name__}: {exc}"
            mark_landed(state_db, obj["uri"], obj["etag"], "failed", reason)
            logger.error("curating %s failed: %s", obj["uri"], reason)
            failed.append({"uri": obj["uri"], "error": reason, "user": err is not None})
    if failed:
        message = (f"{len(failed)} of {len(done) + len(failed)} objects failed: "
                   + "; ".join(f"{f['uri']}: {f['error']}" for f in failed))
        raise (TagtreeError if all(f["user"] for f in failed) else RuntimeError)(message)
    return {"curated": done}
