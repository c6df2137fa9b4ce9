"""The `curate` flow: ingest -> annotate -> embed -> tree -> ground -> score -> sample -> export
-> report.

Each step is one task from ``tasks/``; the order, the tree lifecycle and the ``runs`` table are
``tagtree.stages.curate.run_curate``'s, the same body ``tagtree.curate()`` runs without Prefect.
Tasks exchange names, versions and small summaries, never data.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.annotate_stage import annotate_stage
from flows.ingest_stage import ingest_stage
from flows.runners import ConfiguredTaskRunner
from tagtree.config import load_config
from tagtree.io.objectstore import browse_url
from tagtree.io.store import Store
from tagtree.stages.curate import SUMMARY_FILE, Steps, run_curate
from tasks.embed import embed_tags
from tasks.export import export
from tasks.ground import ground
from tasks.objects import conn_of, upload_outputs
from tasks.policies import artifact_key
from tasks.report import report
from tasks.sample import sample
from tasks.score import score
from tasks.tree import build_tree

__all__ = ["SUMMARY_FILE", "curate", "mark_run_crashed", "publish_outputs"]


def mark_run_crashed(flow, flow_run, state) -> None:
    """on_crashed / on_cancellation hook: the run's ``runs`` row says so (not 'running')."""
    params = flow_run.parameters or {}
    try:
        cfg, _ = load_config(params.get("config_path"),
                             (params.get("overrides") or {}) | {"store.db": params.get("db")})
        with Store(cfg.store.db) as store:
            store.mark_run(str(flow_run.id), state.name.lower(), only_if="running")
    except Exception as exc:  # noqa: BLE001 - a hook must not hide the run's own end
        from prefect.logging.loggers import flow_run_logger

        flow_run_logger(flow_run, flow).warning("could not mark run %s %s in the store: %s",
                                                flow_run.id, state.name, exc)


@flow(name="curate", log_prints=False, task_runner=ConfiguredTaskRunner(),
      on_crashed=[mark_run_crashed], on_cancellation=[mark_run_crashed])
def curate(
    inputs: list[str],
    target: str | None = None,
    budget: str | None = None,
    method: str | None = None,
    out: str | None = None,
    db: str | None = None,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    datasets: list[str] | None = None,
    pool_with: list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict:
    """Select the best `budget` of the inputs through the knowledge tree, aligned to `target`.

    inputs: instruction data files. target: a target-domain sample (optional). budget: a fraction
    (0.05) or a count (5000). method: tags (TAGS) or a baseline. out: directory or s3:// prefix
    for the selection, manifest, report and summary.json. datasets: a dataset name per input
    (default: each file's stem). pool_with: stored datasets the selection may also draw from.
    meta: extra fields for summary.json (the on-upload flow's object). Every other knob comes
    from the recipe (`config_path`) or `overrides`.
    """
    logger = get_run_logger()
    cfg, _ = load_config(config_path, (overrides or {}) | {
        "store.db": db, "sample.budget": budget, "sample.method": method, "export.out": out})
    run_id = str(flow_run.get_id() or f"local-{int(time.time())}")
    steps = Steps(ingest=ingest_stage, annotate=annotate_stage, embed=embed_tags,
                  build_tree=build_tree, ground=ground, score=score, sample=sample,
                  export=export, report=report,
                  upload=lambda local, prefix, c: upload_outputs(local, prefix, conn_of(c)),
                  browse_url=lambda uri, c: browse_url(uri, conn_of(c)),
                  publish=publish_outputs, log=logger.info)
    return run_curate(steps, cfg, inputs, run_id, target=target, datasets=datasets,
                      pool_with=pool_with, meta=meta)


def publish_outputs(cfg, result: dict, ingested: dict) -> None:
    """One markdown artifact per dataset's run: where every output went (links), the run's
    figures, and the quarantined rows (counts and the first reasons)."""
    from prefect.artifacts import create_markdown_artifact

    conn = conn_of(cfg)
    outputs = result["outputs"]
    files = [*outputs["selection"], outputs["manifest"], outputs["report"], outputs["summary"]]
    sample_ = result.get("sample") or {}
    lines = [f"### tagtree run `{result['run_id']}`", "",
             f"Datasets: {', '.join(f'`{d}`' for d in cfg.sample.pool or [])}; tree "
             f"`{result.get('tree_version')}`; selected {sample_.get('selected', 0):,} of "
             f"{sample_.get('pool', 0):,}.", "", "#### Outputs", ""]
    lines += [f"- [{uri}]({browse_url(uri, conn)})" for uri in files]
    quarantined = sum(f["quarantined"] for f in ingested["files"])
    lines += ["", f"#### Quarantine: {quarantined:,} rows", ""]
    if quarantined:
        with Store(cfg.store.db) as store:
            counts, first = store.quarantine_summary([f["path"] for f in ingested["files"]])
        lines += [f"- {reason}: {n:,}" for reason, n in counts]
        lines += ["", "| file | line | field | reason |", "|---|---|---|---|"]
        lines += [f"| `{Path(f).name}` | {line} | {field or ''} | {msg} |"
                  for f, line, field, msg in first]
    create_markdown_artifact(key=artifact_key("tagtree-run", cfg.model_dump()),
                             markdown="\n".join(lines),
                             description="Outputs and quarantine of this run")
