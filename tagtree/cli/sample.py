"""`tagtree sample` (select a subset, optionally export it) and `tagtree compare` (every method)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import typer
from rich.table import Table

from tagtree.cli.common import ConfigOption, DbOption, console, err_console, settings
from tagtree.errors import TagtreeError

_COLUMNS = ("selected", "leaf_coverage", "entropy_l0", "entropy_l1", "entropy_l2", "kl_target",
            "mean_quality", "same_leaves", "near_duplicates", "seconds")


def register(app: typer.Typer) -> None:
    app.command(epilog="Examples: tagtree sample --budget 0.05 --out out/selection.jsonl; "
                       "tagtree sample --budget 5000 --method deita --seed 1")(sample)
    app.command(epilog="Example: tagtree compare --budget 0.05")(compare)


def _prepare(cfg, target: Path | None, kind: str) -> tuple[str, list[str] | None]:
    """A new run id (recorded in ``runs``), the target names (the --target file ingested,
    tagged and grounded first when the store lacks it), and scores if none exist yet."""
    from tagtree.io.store import Store
    from tasks.sample import ensure_target
    from tasks.score import run_score

    run_id = f"{kind}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    with Store(cfg.store.db) as store:
        version = store.latest_tree_version()
    if version is None:
        raise TagtreeError("no knowledge tree in the store (run `tagtree curate` or build one)")
    names = None
    if target is not None:
        prepared = ensure_target(cfg.store.db, cfg.model_dump(), str(target), version)
        for line in prepared["lines"]:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        names = prepared["names"]
    with Store(cfg.store.db) as store:
        scored = store.scalar("SELECT count(*) FROM scores WHERE tree_version = ?", [version])
        store.start_run(run_id, kind, cfg.model_dump())
    if not scored:
        console.print(run_score(cfg.store.db, cfg.model_dump(), version)["line"], markup=False)
    return run_id, names


def _finish(cfg, run_id: str, status: str, metrics: dict) -> None:
    from tagtree.io.store import Store

    with Store(cfg.store.db) as store:
        store.finish_run(run_id, status, metrics=metrics)


def metrics_table(summary: dict, title: str) -> Table:
    from tasks.sample import metrics_rows

    rows = metrics_rows(summary)
    cols = [c for c in _COLUMNS if any(c in r for r in rows)]
    t = Table("method", *cols, title=title)
    for r in rows:
        t.add_row(r["method"], *("" if r.get(c) is None else f"{r[c]:,.4g}" for c in cols))
    return t


def _run(cfg, target, kind, methods, seeds=1):
    from tasks.sample import run_sample

    run_id, names = _prepare(cfg, target, kind)
    try:
        summary = run_sample(cfg.store.db, cfg.model_dump(), None, run_id, methods=methods,
                             target=names, random_seeds=seeds)
    except BaseException:
        _finish(cfg, run_id, "failed", {})
        raise
    _finish(cfg, run_id, "completed", {"sample": summary})
    return run_id, summary


def sample(
    budget: str = typer.Option(None, "--budget", "-b", help="Fraction (0.05) or count (5000) "
                               "[sample.budget: 0.05]."),
    target: Path = typer.Option(None, "--target", help="Align to this target sample: a file (or "
                                "dataset directory) is ingested, tagged and grounded on the "
                                "current tree when the store lacks it [default: every stored "
                                "target sample]."),
    method: str = typer.Option(None, "--method", "-m",
                               help="tags|random|instag|deita|kcenter|quality [tags]."),
    align: str = typer.Option(None, "--align", help="penalty|quota|none [penalty]."),
    seed: int = typer.Option(None, "--seed", help="Random seed [0]."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the selection here: a path "
                             "with a file extension (sel.jsonl) is the data file, the manifest "
                             "goes beside it (sel.manifest.json); one without is a directory."),
    fmt: str = typer.Option(None, "--format", "-f", help="Export format auto|input|jsonl|"
                            "parquet|hf|llamafactory|axolotl [auto: one training file]."),
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Select a budgeted subset of the pool through the knowledge tree (TAGS or a baseline)."""
    cfg = settings(config, {"store.db": db, "sample.budget": budget, "sample.method": method,
                            "sample.align": align, "sample.seed": seed, "export.format": fmt})
    run_id, summary = _run(cfg, target, "sample", [cfg.sample.method])
    console.print(metrics_table(summary, f"run {run_id}"))
    console.print(summary["line"], markup=False, highlight=False, soft_wrap=True)
    if summary["target_instances"] and not summary["target_grounded"]:
        err_console.print("warning: the target sample has no grounding on this tree, so the "
                          "selection is not aligned (tag and ground it first)")
    if out is not None:
        from tasks.export import run_export

        result = run_export(cfg.store.db, cfg.model_dump(), run_id, str(out))
        console.print(result["line"], markup=False, highlight=False, soft_wrap=True)
        for path in result.get("config", []):
            if path.endswith(".yml"):
                console.print(Path(path).read_text(encoding="utf-8"), markup=False,
                              highlight=False)


def compare(
    budget: str = typer.Option(None, "--budget", "-b", help="Fraction or count [0.05]."),
    target: Path = typer.Option(None, "--target", help="Target sample to measure KL against "
                                "[default: every stored target sample]."),
    seeds: int = typer.Option(20, "--seeds", help="Random baseline: mean over this many seeds."),
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Run TAGS and every baseline on the current pool and print their metrics side by side."""
    from tagtree.sampling import METHODS

    cfg = settings(config, {"store.db": db, "sample.budget": budget})
    run_id, summary = _run(cfg, target, "compare", list(METHODS), seeds)
    console.print(metrics_table(summary, f"compare: budget {cfg.sample.budget}, "
                                         f"pool {summary['pool']:,} (run {run_id})"))
    for method, why in summary["skipped"].items():
        err_console.print(f"skipped {method}: {why}", markup=False, highlight=False)
    if summary["aligned"]:
        console.print(f"KL(target || pool) before selection: {summary['kl_before']:.4f}")
