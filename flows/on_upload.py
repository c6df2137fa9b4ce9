"""The `on-upload` flow: curate newly landed objects and write each selection and report back
under the output prefix. Started by the landing-event trigger; it takes every pending object, not
only the triggering one (a trigger passes only the first event's context).

Crash recovery: each object taken is claimed for this flow run. When the run crashes or is
cancelled, its hooks put its unfinished objects back to 'new' (a serving runner runs them too when
the run's process is SIGKILLed); when no hook runs (an unsupervised process killed, the serving
process or machine lost), the next run takes them over once Prefect reports the claiming run
Crashed/Failed/Cancelled or unknown, or once the claim is older than ``objects.claim_lease_s``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
from prefect import flow, get_run_logger
from prefect.logging.loggers import flow_run_logger

from flows.curate import curate
from flows.runners import with_runner
from tagtree.config import load_config
from tagtree.io.objectstore import join_uri
from tasks.objects import (
    claim_pending,
    conn_of,
    download_object,
    mark_landed,
    release_claims,
    upload_outputs,
)

SUMMARY_FILE = "summary.json"


def release_run_claims(flow, flow_run, state) -> None:
    """on_crashed / on_cancellation hook: this run's objects still 'processing' -> 'new', so
    the next run takes them at once. Runs in the flow's process, or in the serving runner's
    when the flow's process died; when neither survives, claim-pending's stale-claim check
    takes the objects over."""
    params = flow_run.parameters or {}
    cfg, _ = load_config(params.get("config_path"), params.get("overrides") or {})
    released = release_claims(cfg.objects.state_db, str(flow_run.id))
    logger = flow_run_logger(flow_run, flow)
    for obj in released:
        logger.warning("run %s is %s: %s (etag %s) is 'new' again for the next run",
                       flow_run.id, state.name, obj["uri"], obj["etag"])


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
) -> dict:
    """Curate the landed dataset `uri` (and any other pending one under `prefix`); results go
    to `output_prefix`/<dataset name>/."""
    logger = get_run_logger()
    overrides = overrides or {}
    cfg, _ = load_config(config_path, overrides | {"store.db": db,
                                                   "objects.output_prefix": output_prefix})
    conn, state_db = conn_of(cfg), cfg.objects.state_db
    done, failed = [], []
    for obj in claim_pending(state_db, prefix, uri, etag or None, cfg.objects.claim_lease_s):
        name = obj["uri"].rstrip("/").rsplit("/", 1)[-1].split(".")[0]
        try:
            local = download_object(obj["uri"], obj["etag"], cfg.objects.cache_dir, conn)
            with tempfile.TemporaryDirectory(prefix="tagtree-out-") as out:
                result = with_runner(curate, cfg.runner)(
                    inputs=[local], target=target, db=cfg.store.db, config_path=config_path,
                    overrides=overrides | {"export.out": out})
                Path(out, SUMMARY_FILE).write_bytes(orjson.dumps(
                    {"uri": obj["uri"], "etag": obj["etag"], "curate": result}, default=str,
                    option=orjson.OPT_INDENT_2))
                uploaded = upload_outputs(out, join_uri(cfg.objects.output_prefix, name), conn)
            mark_landed(state_db, obj["uri"], obj["etag"], "done")
            done.append({"uri": obj["uri"], "outputs": uploaded})
        except Exception as exc:  # one bad object must not strand the others
            mark_landed(state_db, obj["uri"], obj["etag"], "failed")
            logger.error("curating %s failed: %s", obj["uri"], exc)
            failed.append({"uri": obj["uri"], "error": str(exc)})
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(done) + len(failed)} objects failed: "
                           + "; ".join(f"{f['uri']}: {f['error']}" for f in failed))
    return {"curated": done}
