"""The `watch-bucket` flow: a polling sensor. Lists a prefix, records object versions (key +
ETag) in landed_objects and emits one `tagtree.object.landed` event per new or changed object."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from tagtree.config import load_config
from tasks.objects import conn_of, emit_landing_events, list_objects, record_landings


@flow(name="watch-bucket", log_prints=False)
def watch_bucket(
    prefix: str,
    state_db: str | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict:
    """Poll `prefix` (s3://bucket/landing/ or a local directory) and announce new datasets."""
    cfg, _ = load_config(config_path, (overrides or {}) | {"objects.state_db": state_db})
    listed = list_objects(prefix, conn_of(cfg))
    fresh = record_landings(cfg.objects.state_db, listed)
    emitted = emit_landing_events(cfg.objects.state_db, fresh)
    get_run_logger().info("%d objects under %s, %d new events", len(listed), prefix, emitted)
    return {"listed": len(listed), "emitted": emitted, "objects": [o["uri"] for o in fresh]}
