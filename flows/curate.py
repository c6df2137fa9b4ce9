"""The `curate` flow: ingest -> annotate -> embed -> tree -> ground -> score -> sample -> export
-> report.

Each step is one task from ``tasks/``; this module only wires them in order and keeps the
``runs`` table up to date. Tasks exchange names, versions and small summaries, never data.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.annotate_stage import annotate_stage
from flows.ingest_stage import ingest_stage
from tagtree.config import load_config
from tagtree.errors import TagtreeError
from tagtree.io.export import report_path
from tagtree.io.store import Store
from tasks.export import export
from tasks.report import report
from tasks.sample import sample
from tasks.score import score
from tasks.tree import build_tree, embed_tags, ground


@flow(name="curate", log_prints=False)
def curate(
    inputs: list[str],
    target: str | None = None,
    budget: str | None = None,
    method: str | None = None,
    out: str | None = None,
    db: str | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict:
    """Select the best `budget` of the inputs through the knowledge tree, aligned to `target`.

    inputs: instruction data files. target: a target-domain sample (optional). budget: a fraction
    (0.05) or a count (5000). method: tags (TAGS) or a baseline. out: directory for the selection,
    manifest and report. Every other knob comes from the recipe (`config_path`) or `overrides`.
    """
    logger = get_run_logger()
    cfg, _ = load_config(config_path, (overrides or {}) | {
        "store.db": db, "sample.budget": budget, "sample.method": method, "export.out": out})
    conf, db = cfg.model_dump(), cfg.store.db
    run_id = str(flow_run.get_id() or f"local-{int(time.time())}")
    with Store(db) as store:
        store.start_run(run_id, "curate", conf)
    result: dict[str, Any] = {"run_id": run_id, "db": db}
    timings: dict[str, float] = {}

    def step(name: str, fn, *args):
        start = time.perf_counter()
        result[name] = fn(*args)
        timings[name] = round(time.perf_counter() - start, 3)
        if isinstance(result[name], dict) and result[name].get("line"):
            logger.info(f"{name}: {result[name]['line']}")
        return result[name]

    try:
        ingested = step("ingest", ingest_stage, db, inputs, cfg, "pool")
        if ingested["loaded"] + ingested["duplicates"] == 0:
            raise TagtreeError("nothing loaded: every input row was quarantined or empty")
        if target:
            step("target", ingest_stage, db, [target], cfg, "target")
        tagger = step("annotate", annotate_stage, db, conf, cfg)["tagger"]
        step("embed", embed_tags, db, conf, tagger)  # a no-op when every tag has a vector
        tree = step("tree", build_tree, db, conf, tagger)
        step("ground", ground, db, conf, tree["tree_version"], tagger)
        step("score", score, db, conf, tree["tree_version"])
        step("sample", sample, db, conf, tree["tree_version"], run_id)
        exported = step("export", export, db, conf, run_id, cfg.export.out)
        result["outputs"] = {"selection": exported["files"], "manifest": exported["manifest"]}
        with Store(db) as store:  # before the report, so the report shows the finished run
            store.finish_run(run_id, "completed", metrics=result, timings=timings)
        page = step("report", report, db, conf, run_id,
                    str(report_path(cfg.export.out, cfg.export.name, cfg.report.filename)))
        result["outputs"]["report"] = page["path"]
    except BaseException:
        with Store(db) as store:
            store.finish_run(run_id, "failed", metrics=result, timings=timings)
        raise
    result["timings"] = timings
    return result
