"""The `watch-bucket` flow: a polling sensor. Lists a prefix, records object versions (key +
ETag) in landed_objects and emits one `tagtree.object.landed` event per new or changed object,
and one more (with a fresh event id) for an object whose run crashed or failed, while it has
attempts left (``objects.max_attempts``): no upload is stranded by a killed run or an outage."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from tagtree.config import load_config
from tasks.objects import (
    conn_of,
    emit_landing_events,
    list_objects,
    record_landings,
    requeue_landings,
)


@flow(name="watch-bucket", log_prints=False)
def watch_bucket(
    prefix: str,
    state_db: str | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict:
    """Poll `prefix` (s3://bucket/landing/ or a local directory) and announce new datasets."""
    cfg, _ = load_config(config_path, (overrides or {}) | {"objects.state_db": state_db})
    state_db = cfg.objects.state_db
    listed = list_objects(prefix, conn_of(cfg))
    again = requeue_landings(state_db, listed, cfg.objects.max_attempts,
                             cfg.objects.claim_lease_s)
    fresh = record_landings(state_db, listed)
    emitted = emit_landing_events(state_db, fresh)
    get_run_logger().info("%d objects under %s, %d events sent (%d of them tried again)",
                          len(listed), prefix, emitted, len(again))
    return {"listed": len(listed), "emitted": emitted, "retried": len(again),
            "objects": [o["uri"] for o in fresh]}
