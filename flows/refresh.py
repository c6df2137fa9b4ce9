"""The `refresh` flow: re-curate every dataset under a prefix into one store. Incremental by
construction: annotations are keyed by (instance, tagger) so only new instances are annotated,
and the tree stage rebuilds only when its drift check says so."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
from prefect import flow

from flows.curate import curate
from flows.runners import with_runner
from tagtree.config import load_config
from tagtree.errors import TagtreeError
from tagtree.io.objectstore import join_uri
from tasks.objects import conn_of, download_object, list_objects, upload_outputs


@flow(name="refresh", log_prints=False)
def refresh(
    prefix: str,
    output_prefix: str | None = None,
    target: str | None = None,
    db: str | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict:
    """Curate all datasets under `prefix` together; results go to `output_prefix`/refresh/."""
    overrides = overrides or {}
    cfg, _ = load_config(config_path, overrides | {"store.db": db,
                                                   "objects.output_prefix": output_prefix})
    conn = conn_of(cfg)
    objects = list_objects(prefix, conn)
    if not objects:
        raise TagtreeError(f"no datasets (.jsonl/.json/.parquet) under {prefix}")
    local = [download_object(o["uri"], o["etag"], cfg.objects.cache_dir, conn) for o in objects]
    with tempfile.TemporaryDirectory(prefix="tagtree-out-") as out:
        result = with_runner(curate, cfg.runner)(
            inputs=local, target=target, db=cfg.store.db, config_path=config_path,
            overrides=overrides | {"export.out": out})
        Path(out, "summary.json").write_bytes(orjson.dumps(
            {"prefix": prefix, "objects": objects, "curate": result}, default=str,
            option=orjson.OPT_INDENT_2))
        uploaded = upload_outputs(out, join_uri(cfg.objects.output_prefix, "refresh"), conn)
    return {"datasets": len(objects), "outputs": uploaded, "curate": result}
