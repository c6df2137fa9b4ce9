"""The `curate` flow: ingest -> annotate -> tree -> ground -> score -> sample -> export -> report.

Each step is one task from ``tasks/``; this module only wires them in order.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tagtree.config import load_config
from tagtree.errors import TagtreeError
from tagtree.io.store import Store
from tasks.ingest import ingest


@flow(name="curate", log_prints=False)
def curate(
    inputs: list[str],
    target: str | None = None,
    db: str | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict:
    """Curate instruction data: ingest the inputs (and an optional target-domain sample)."""
    logger = get_run_logger()
    cfg, _ = load_config(config_path, (overrides or {}) | {"store.db": db})
    run_id = flow_run.get_id() or "local"
    with Store(cfg.store.db) as store:
        store.start_run(str(run_id), "curate", cfg.model_dump())
    result: dict[str, Any] = {"run_id": str(run_id), "db": cfg.store.db}
    try:
        result["ingest"] = ingest(cfg.store.db, inputs, cfg.ingest.format, cfg.ingest.dataset,
                                  "pool", cfg.ingest.batch_rows)
        logger.info(result["ingest"]["line"])
        if result["ingest"]["loaded"] + result["ingest"]["duplicates"] == 0:
            raise TagtreeError("nothing loaded: every input row was quarantined or empty")
        if target:
            result["target"] = ingest(cfg.store.db, [target], "auto", None, "target",
                                      cfg.ingest.batch_rows)
            logger.info("target: " + result["target"]["line"])
    except BaseException:
        with Store(cfg.store.db) as store:
            store.finish_run(str(run_id), "failed", metrics=result)
        raise
    with Store(cfg.store.db) as store:
        store.finish_run(str(run_id), "completed", metrics=result)
    return result
