"""The `curate` flow: ingest -> annotate -> embed -> tree -> ground -> score -> sample -> export
-> report.

Each step is one task from ``tasks/``; this module only wires them in order and keeps the
``runs`` table up to date. Tasks exchange names, versions and small summaries, never data.
The selection draws from the datasets this run ingested (plus ``pool_with``), over the one tree
of the store. Every output -- selection, manifest, report, ``summary.json`` -- goes to ``out``:
a local directory or an s3:// prefix (written locally, then uploaded).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.annotate_stage import annotate_stage
from flows.ingest_stage import ingest_stage
from flows.runners import ConfiguredTaskRunner
from tagtree.cli.summary import stage_figures
from tagtree.config import ExportConfig, load_config
from tagtree.errors import TagtreeError
from tagtree.io.atomic import write_bytes_atomic
from tagtree.io.export import report_path
from tagtree.io.objectstore import is_s3
from tagtree.io.store import Store
from tasks.export import export
from tasks.objects import browse_url, conn_of, upload_outputs
from tasks.policies import artifact_key
from tasks.report import report
from tasks.sample import sample
from tasks.score import score
from tasks.tree import GROUNDING_ONLY, build_tree, embed_tags, ground

SUMMARY_FILE = "summary.json"


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
    db, out = cfg.store.db, cfg.export.out
    if datasets is not None and len(datasets) != len(inputs):
        raise TagtreeError(f"{len(datasets)} dataset names for {len(inputs)} inputs")
    run_id = str(flow_run.get_id() or f"local-{int(time.time())}")
    remote = is_s3(out)
    local_out = tempfile.mkdtemp(prefix="tagtree-out-") if remote else out
    result: dict[str, Any] = {"run_id": run_id, "db": db}
    timings: dict[str, float] = {}
    with Store(db) as store:
        store.start_run(run_id, "curate", cfg.model_dump())

    def step(name: str, fn, *args):
        start = time.perf_counter()
        result[name] = fn(*args)
        timings[name] = round(time.perf_counter() - start, 3)
        if isinstance(result[name], dict):  # one INFO line per stage: the run's Logs tab
            logger.info(f"{name}: {stage_figures(result[name])} ({timings[name]:.1f}s)")
        return result[name]

    try:
        ingested = step("ingest", ingest_stage, db, inputs, cfg, "pool", datasets)
        if ingested["loaded"] + ingested["duplicates"] == 0:
            raise TagtreeError(nothing_loaded(db, ingested))
        if cfg.sample.pool is None:  # this run's datasets only, plus what it is told to pool
            names = list(dict.fromkeys([f["dataset"] for f in ingested["files"]]
                                       + list(pool_with or [])))
            cfg.sample.pool = names
        conf = cfg.model_dump()
        # The store-wide stages see the recipe without this run's pool and output place, so
        # their caches are shared by every dataset's run (what they make is the same).
        shared = conf | {"sample": conf["sample"] | {"pool": None},
                         "export": ExportConfig().model_dump()}
        if target:
            step("target", ingest_stage, db, [target], cfg, "target")
        tagger = step("annotate", annotate_stage, db, shared, cfg)["tagger"]
        step("embed", embed_tags, db, shared, tagger)  # a no-op when every tag has a vector
        version = tree_stage(db, cfg, shared, tagger, step, result, logger)
        step("score", score, db, shared, version)
        step("sample", sample, db, conf, version, run_id)
        exported = step("export", export, db, conf, run_id, local_out, version,
                        out if remote else None)
        result["tree_version"] = version
        result["outputs"] = {"selection": exported["files"][:-1],
                             "manifest": exported["manifest"]}
        with Store(db) as store:  # before the report, so the report shows the finished run
            store.finish_run(run_id, "completed", metrics=result, timings=timings)
        # A local --out with an extension is a file: report and summary are its sidecars.
        page_at = report_path(local_out, cfg.export.name, cfg.report.filename)
        page_uri = out.rstrip("/") + "/" + page_at.name
        page = step("report", report, db, conf, run_id, str(page_at),
                    browse_url(page_uri, conn_of(cfg)) if remote else None)
        result["outputs"]["report"] = page_uri if remote else page["path"]
        summary_at = report_path(local_out, cfg.export.name, SUMMARY_FILE)
        result["outputs"]["summary"] = (out.rstrip("/") + "/" + summary_at.name) if remote \
            else str(summary_at.resolve())
        result["timings"] = timings
        write_bytes_atomic(summary_at, orjson.dumps(
            (meta or {}) | {"inputs": inputs, "datasets": cfg.sample.pool, "curate": result},
            default=str, option=orjson.OPT_INDENT_2))
        if remote:
            start = time.perf_counter()
            uploaded = upload_outputs(local_out, out, conn_of(cfg))
            timings["upload"] = round(time.perf_counter() - start, 3)
            logger.info(f"upload: {len(uploaded)} files to {out} in {timings['upload']:.1f}s")
        publish_outputs(cfg, result, ingested)
    except BaseException:
        with Store(db) as store:
            store.finish_run(run_id, "failed", metrics=result, timings=timings)
        raise
    finally:
        if remote:
            shutil.rmtree(local_out, ignore_errors=True)
    return result


def current_tree(db: str, cfg, tagger: str) -> str | None:
    """The store's newest tree when this run may ground on it (``tree.reuse``, built for the
    same tagger with the same tree and embedding settings), else None."""
    if not cfg.tree.reuse:
        return None
    with Store(db) as store:
        version = store.latest_tree_version()
        if version is None:
            return None
        stats = store.tree_stats(version)
        built = orjson.loads(store.scalar("SELECT config FROM trees WHERE tree_version = ?",
                                          [version]) or "{}")
    now = cfg.model_dump(include={"tree", "embed"})
    same = {k: v for k, v in (built.get("tree") or {}).items() if k not in GROUNDING_ONLY} == \
        {k: v for k, v in now["tree"].items() if k not in GROUNDING_ONLY}
    if stats.get("tagger") != tagger or not same or built.get("embed") != now["embed"]:
        return None
    return version


def tree_stage(db: str, cfg, conf: dict, tagger: str, step, result: dict, logger) -> str:
    """The tree lifecycle: new data is grounded on the current tree while the drift measured
    on this run's datasets stays at or under ``tree.drift_threshold``; above it (or with no
    usable tree) a tree is built over every tag in the store and everything is grounded on it.
    Returns the tree version the run samples on."""
    pool, threshold = cfg.sample.pool, cfg.tree.drift_threshold
    version = current_tree(db, cfg, tagger)
    if version is not None:
        grounded = step("ground", ground, db, conf, version, tagger, pool)
        if grounded["drift"] <= threshold:
            result["tree"] = {"tree_version": version, "reused": True, "tagger": tagger,
                              "drift": grounded["drift"],
                              "line": f"tree version {version} kept: drift "
                                      f"{grounded['drift']:.4f} of this run's data <= "
                                      f"{threshold} (no rebuild, no refinement requests)"}
            logger.info(f"tree: {result['tree']['line']}")
            return version
        logger.info(f"tree: drift {grounded['drift']:.4f} of this run's data on tree {version} "
                    f"> {threshold}: rebuilding")
    tree = step("tree", build_tree, db, conf, tagger)
    if version is not None:
        tree["drift_on_previous"] = {"tree_version": version, "drift": grounded["drift"]}
    step("ground", ground, db, conf, tree["tree_version"], tagger, pool)
    return tree["tree_version"]


def nothing_loaded(db: str, ingested: dict) -> str:
    """Why a run has nothing to curate, naming the files and the first quarantined row."""
    paths = [f["path"] for f in ingested["files"]]
    names = ", ".join(Path(p).name for p in paths)
    quarantined = sum(f["quarantined"] for f in ingested["files"])
    if not quarantined:
        return f"nothing loaded from {names}: the input is empty"
    with Store(db) as store:
        _, first = store.quarantine_summary(paths, first=1)
    where = f"; first: {Path(first[0][0]).name} line {first[0][1]}: {first[0][3]}" if first \
        else ""
    return (f"nothing loaded from {names}: all {quarantined:,} rows were quarantined{where} "
            "(see `tagtree stats`)")


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
