"""The whole pipeline: ingest -> annotate -> embed -> tree -> ground -> score -> sample -> export
-> report, as ``curate()`` (plain function calls, no Prefect) and as the body the Prefect
``curate`` flow runs with its tasks (``run_curate`` with other ``Steps``).

The selection draws from the datasets this run ingested (plus ``pool_with``), over the one tree
of the store. Every output -- selection, manifest, report, ``summary.json`` -- goes to ``out``:
a local directory or an s3:// prefix (written locally, then uploaded).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tagtree.config import Config, ExportConfig
from tagtree.errors import TagtreeError
from tagtree.stages.common import as_config, store_path, with_settings
from tagtree.stages.resources import Resources, resources_or_new
from tagtree.stages.results import CurateResult, stage_figures

SUMMARY_FILE = "summary.json"


@dataclass
class Steps:
    """What runs each stage, all with the JSON-able signatures of the Prefect tasks (a db path,
    the config as a dict, names and versions): the flow passes its tasks, ``curate()`` the
    library functions. ``upload(local_dir, prefix, config)``; ``publish(config, result,
    ingested)`` records the run's outputs where a user looks (Prefect artifacts)."""

    ingest: Callable  # (db, inputs, config, role, names) -> dict
    annotate: Callable  # (db, cfg, config) -> dict
    embed: Callable  # (db, cfg, tagger) -> dict
    build_tree: Callable  # (db, cfg, tagger) -> dict
    ground: Callable  # (db, cfg, version, tagger, drift_datasets) -> dict
    score: Callable  # (db, cfg, version) -> dict
    sample: Callable  # (db, cfg, version, run_id) -> dict
    export: Callable  # (db, cfg, run_id, out, version, location) -> dict
    report: Callable  # (db, cfg, run_id, out, location) -> dict
    upload: Callable  # (local_dir, prefix, config) -> list[str]
    browse_url: Callable[[str, Config], str]
    publish: Callable[[Config, dict, dict], None]
    log: Callable[[str], None]


def run_curate(steps: Steps, cfg: Config, inputs: list[str], run_id: str, *,
               target: str | None = None, datasets: list[str] | None = None,
               pool_with: list[str] | None = None, meta: dict[str, Any] | None = None) -> dict:
    """Every stage in order, keeping the ``runs`` table up to date; returns the result dict
    (``{"run_id", "db", <stage>: summary, "outputs", "timings", ...}``)."""
    from tagtree.io.atomic import write_bytes_atomic
    from tagtree.io.export import report_path
    from tagtree.io.objectstore import is_s3
    from tagtree.io.store import Store

    db, out = cfg.store.db, cfg.export.out
    if datasets is not None and len(datasets) != len(inputs):
        raise TagtreeError(f"{len(datasets)} dataset names for {len(inputs)} inputs")
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
            steps.log(f"{name}: {stage_figures(result[name])} ({timings[name]:.1f}s)")
        return result[name]

    try:
        ingested = step("ingest", steps.ingest, db, inputs, cfg, "pool", datasets)
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
            step("target", steps.ingest, db, [target], cfg, "target")
        tagger = step("annotate", steps.annotate, db, shared, cfg)["tagger"]
        step("embed", steps.embed, db, shared, tagger)  # a no-op when every tag has a vector
        version = tree_stage(steps, db, cfg, shared, tagger, step, result)
        step("score", steps.score, db, shared, version)
        step("sample", steps.sample, db, conf, version, run_id)
        exported = step("export", steps.export, db, conf, run_id, local_out, version,
                        out if remote else None)
        result["tree_version"] = version
        result["outputs"] = {"selection": exported["files"][:-1],
                             "manifest": exported["manifest"]}
        with Store(db) as store:  # before the report, so the report shows the finished run
            store.finish_run(run_id, "completed", metrics=result, timings=timings)
        # A local --out with an extension is a file: report and summary are its sidecars.
        page_at = report_path(local_out, cfg.export.name, cfg.report.filename)
        page_uri = out.rstrip("/") + "/" + page_at.name
        page = step("report", steps.report, db, conf, run_id, str(page_at),
                    steps.browse_url(page_uri, cfg) if remote else None)
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
            uploaded = steps.upload(local_out, out, cfg)
            timings["upload"] = round(time.perf_counter() - start, 3)
            steps.log(f"upload: {len(uploaded)} files to {out} in {timings['upload']:.1f}s")
        steps.publish(cfg, result, ingested)
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
    from tagtree.io.store import Store
    from tagtree.stages.tree import GROUNDING_ONLY

    if not cfg.tree.reuse:
        return None
    with Store(db) as store:
        version = store.latest_tree_version()
        if version is None:
            return None
        stats = store.tree_stats(version)
        built = store.tree_config(version)
    now = cfg.model_dump(include={"tree", "embed"})
    same = {k: v for k, v in (built.get("tree") or {}).items() if k not in GROUNDING_ONLY} == \
        {k: v for k, v in now["tree"].items() if k not in GROUNDING_ONLY}
    if stats.get("tagger") != tagger or not same or built.get("embed") != now["embed"]:
        return None
    return version


def tree_stage(steps: Steps, db: str, cfg, conf: dict, tagger: str, step, result: dict) -> str:
    """The tree lifecycle: new data is grounded on the current tree while the drift measured
    on this run's datasets stays at or under ``tree.drift_threshold``; above it (or with no
    usable tree) a tree is built over every tag in the store and everything is grounded on it.
    Returns the tree version the run samples on."""
    pool, threshold = cfg.sample.pool, cfg.tree.drift_threshold
    version = current_tree(db, cfg, tagger)
    if version is not None:
        grounded = step("ground", steps.ground, db, conf, version, tagger, pool)
        if grounded["drift"] <= threshold:
            result["tree"] = {"tree_version": version, "reused": True, "tagger": tagger,
                              "drift": grounded["drift"],
                              "line": f"tree version {version} kept: drift "
                                      f"{grounded['drift']:.4f} of this run's data <= "
                                      f"{threshold} (no rebuild, no refinement requests)"}
            steps.log(f"tree: {result['tree']['line']}")
            return version
        steps.log(f"tree: drift {grounded['drift']:.4f} of this run's data on tree {version} "
                  f"> {threshold}: rebuilding")
    tree = step("tree", steps.build_tree, db, conf, tagger)
    if version is not None:
        tree["drift_on_previous"] = {"tree_version": version, "drift": grounded["drift"]}
    step("ground", steps.ground, db, conf, tree["tree_version"], tagger, pool)
    return tree["tree_version"]


def nothing_loaded(db: str, ingested: dict) -> str:
    """Why a run has nothing to curate, naming the files and the first quarantined row."""
    from tagtree.io.store import Store

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


def library_steps(resources: Resources, log: Callable[[str], None]) -> Steps:
    """The stages as plain calls sharing one set of resources (one embedder for the run)."""
    from tagtree.stages import annotate, embed, export, ground, ingest, report, sample, score
    from tagtree.stages import tree as tree_stage_

    def ingest_step(db, inputs, cfg, role, names=None):
        if names is not None and len(set(names)) > 1:  # one ingest per dataset, in input order
            parts = [ingest_step(db, [p], cfg, role, [n]) for p, n in zip(inputs, names,
                                                                         strict=True)]
            return _merged_ingest(parts)
        return ingest.ingest(db, inputs, config=cfg, role=role,
                             dataset=names[0] if names else None).figures

    def upload(local_dir, prefix, cfg):
        root = Path(local_dir)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        target = resources.objects_for(cfg, prefix)
        return [target.upload(p, prefix.rstrip("/") + "/" + p.relative_to(root).as_posix())
                for p in files]

    def browse_url(uri, cfg):
        from tagtree.io.objectstore import browse_url as url

        return url(uri, {"endpoint_url": cfg.objects.endpoint_url})

    return Steps(
        ingest=ingest_step,
        annotate=lambda db, cfg, _config: annotate.run_annotate(db, cfg, resources=resources),
        embed=lambda db, cfg, tagger: embed.run_embed(db, cfg, tagger, resources=resources),
        build_tree=lambda db, cfg, tagger: tree_stage_.build_tree(
            db, config=cfg, resources=resources, tagger=tagger).figures,
        ground=lambda db, cfg, version, tagger, pool: ground.ground(
            db, config=cfg, resources=resources, tree_version=version, tagger=tagger,
            drift_datasets=pool).figures,
        score=lambda db, cfg, version: score.run_score(db, cfg, version, resources=resources),
        sample=lambda db, cfg, version, run_id: sample.run_sample(db, cfg, version, run_id,
                                                                  resources=resources),
        export=lambda db, cfg, run_id, out, version, location: export.run_export(
            db, cfg, run_id, out, tree_version=version, location=location),
        report=lambda db, cfg, run_id, out, location: report.write_report(db, cfg, run_id,
                                                                          out)[0],
        upload=upload, browse_url=browse_url, publish=lambda *_: None, log=log)


def _merged_ingest(parts: list[dict]) -> dict:
    from tagtree.io.ingest import FileSummary, IngestSummary

    summary = IngestSummary(files=[FileSummary(**f) for r in parts for f in r["files"]],
                            seconds=sum(r["seconds"] for r in parts))
    return summary.to_dict() | {"line": summary.line()}


def curate(store, inputs: Sequence[str | Path], *, config=None,
           resources: Resources | None = None, target: str | Path | None = None,
           budget: str | float | None = None, method: str | None = None,
           out: str | Path | None = None, datasets: list[str] | None = None,
           pool_with: list[str] | None = None, meta: dict[str, Any] | None = None,
           run_id: str | None = None, log: Callable[[str], None] | None = None) -> CurateResult:
    """Select the best ``budget`` of ``inputs`` (paths, or ``datasets.Dataset`` /
    ``DatasetDict`` objects held in memory) through the knowledge tree, aligned to ``target``,
    writing selection, manifest, report and summary.json to ``out`` (default ``export.out``: a
    directory, a file path with an extension, or an s3:// prefix). The same stages as the
    Prefect ``curate`` flow, called in this process; the store keeps every stage's work, so a
    re-run resumes. ``log``: called with one line per stage."""
    from tagtree.io.runlock import run_lock
    from tagtree.stages.ingest import is_hf_object

    path = store_path(store)
    cfg = with_settings(as_config(config), {"store.db": path,
                                            "sample.budget": None if budget is None
                                            else str(budget),
                                            "sample.method": method,
                                            "export.out": str(out) if out else None})
    if run_id is None:
        from tagtree.stages.sample import new_run_id

        run_id = new_run_id("curate")
    steps = library_steps(resources_or_new(resources), log or (lambda line: None))
    with run_lock(path, "tagtree.curate"):
        result = run_curate(steps, cfg, [p if is_hf_object(p) else str(p) for p in inputs],
                            run_id,
                            target=str(target) if target else None, datasets=datasets,
                            pool_with=pool_with, meta=meta)
    return CurateResult.of(result | {"line": (
        f"curate run {run_id}: selected {result['sample']['selected']:,} of "
        f"{result['sample']['pool']:,} on tree {result['tree_version']}; outputs in "
        f"{Path(result['outputs']['summary']).parent}")})
