"""The `refresh` flow: re-curate the datasets under a prefix as they are now, into one store and
one selection. Incremental by construction: annotations are keyed by (instance, tagger) so only
new instances are annotated. A dataset deleted from the prefix is no longer in the pool (its
rows stay in the store, unselected); a changed object is its new version only."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.on_upload import curate_objects, dataset_of
from tagtree.config import load_config
from tagtree.errors import TagtreeError
from tagtree.io.objectstore import join_uri
from tasks.objects import conn_of, list_objects


@flow(name="refresh", log_prints=False)
def refresh(
    prefix: str,
    output_prefix: str | None = None,
    target: str | None = None,
    db: str | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    pool_with: list[str] | None = None,
) -> dict:
    """Curate all datasets under `prefix` together (each named by its key path and version, as
    on-upload names them); results go to `output_prefix`/refresh/."""
    overrides = overrides or {}
    cfg, _ = load_config(config_path, overrides | {"store.db": db,
                                                   "objects.output_prefix": output_prefix})
    conn = conn_of(cfg)
    objects = list_objects(prefix, conn)
    if not objects:
        raise TagtreeError(f"no datasets (.jsonl/.json/.parquet) under {prefix}")
    names = [dataset_of(o["uri"], o["etag"], prefix) for o in objects]
    get_run_logger().info("refresh: %d datasets under %s: %s", len(objects), prefix,
                          ", ".join(names))
    out = join_uri(cfg.objects.output_prefix, "refresh")
    result = curate_objects(objects, prefix, out, cfg, target=target, config_path=config_path,
                            overrides=overrides, pool_with=pool_with,
                            meta={"prefix": prefix, "objects": objects})
    outputs = result["outputs"]
    uploaded = [*outputs["selection"], outputs["manifest"], outputs["report"],
                outputs["summary"]]
    return {"datasets": len(objects), "outputs": uploaded, "curate": result}
