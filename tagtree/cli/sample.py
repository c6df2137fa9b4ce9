"""`tagtree sample` (select a subset, optionally export it) and `tagtree compare` (every method)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import typer
from rich.table import Table

from tagtree.cli.common import (
    ConfigOption,
    DbOption,
    ExportFormatOption,
    console,
    err_console,
    settings,
)
from tagtree.errors import TagtreeError

_COLUMNS = ("selected", "leaf_coverage", "entropy_l0", "entropy_l1", "entropy_l2", "kl_target",
            "mean_quality", "length_ratio", "same_leaves", "near_duplicates", "seconds")


def register(app: typer.Typer) -> None:
    app.command(epilog="Examples: tagtree sample --budget 0.05 --out out/selection.jsonl; "
                       "tagtree sample --budget 5000 --method deita --seed 1")(sample)
    app.command(epilog="Example: tagtree compare --budget 0.05")(compare)


def _prepare(cfg, target: Path | None, kind: str,
             quiet: bool = False) -> tuple[str, list[str] | None]:
    """A new run id (recorded in ``runs``), the target names (the --target file ingested,
    tagged and grounded first when the store lacks it), and scores if none exist yet."""
    from tagtree.io.store import Store
    from tagtree.stages.sample import ensure_target
    from tagtree.stages.score import run_score

    run_id = f"{kind}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    with Store(cfg.store.db) as store:
        version = store.latest_tree_version()
    if version is None:
        raise TagtreeError("no knowledge tree in the store (run `tagtree curate` or build one)")
    names = None
    if target is not None:
        prepared = ensure_target(cfg.store.db, cfg.model_dump(), str(target), version)
        for line in prepared["lines"]:
            (err_console if quiet else console).print(line, markup=False, highlight=False,
                                                      soft_wrap=True)
        names = prepared["names"]
    with Store(cfg.store.db) as store:
        scored = store.scored_count(version)
        store.start_run(run_id, kind, cfg.model_dump())
    if not scored:
        line = run_score(cfg.store.db, cfg.model_dump(), version)["line"]
        (err_console if quiet else console).print(line, markup=False, highlight=False,
                                                  soft_wrap=True)
    return run_id, names


def _finish(cfg, run_id: str, status: str, metrics: dict) -> None:
    from tagtree.io.store import Store

    with Store(cfg.store.db) as store:
        store.finish_run(run_id, status, metrics=metrics)


# The narrow table (fits 80 columns): few, well-named columns; --wide shows every metric.
NARROW = (("selected", "picked"), ("leaf_coverage", "leaf cover"), ("entropy_l0", "entropy"),
          ("kl_target_aligned", "KL tgt"), ("mean_quality", "quality"),
          ("same_leaves", "repeats"))
COUNTS = {"selected", "same_leaves", "near_duplicates", "seeds", "align_level"}
NARROW_LEGEND = ("picked: instances selected; leaf cover: share of the pool's leaves covered; "
                 "entropy: normalised entropy over leaves (1 = even); KL tgt: KL(target || "
                 "selection) in nats on the level this budget is aligned on (below), lower = "
                 "closer; quality: mean q(x); repeats: picks on exactly the leaves of an earlier "
                 "pick. --wide: every metric (kl_target: on the leaves).")


def kl_before_line(summary: dict) -> str:
    """The pool's KL to the target, on the level the budget is aligned on and on the leaves."""
    level, leaves = summary.get("align_level"), summary["kl_before"]
    if not level:
        return f"KL(target || pool) before selection: {leaves:.4f}"
    return (f"KL(target || pool) before selection: {summary['kl_before_aligned']:.4f} on level "
            f"{level}, the level a selection of this size is aligned on; {leaves:.4f} on the "
            f"leaves")


def _cell(metric: str, value) -> str:
    if value is None:
        return ""
    if metric in COUNTS:
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"


def _metric_names(rows: list[dict]) -> list[str]:
    """Every metric of the rows: the usual ones first, then the rest by name (the alignment
    level and KL on it, the random baseline's seeds)."""
    metrics = [c for c in _COLUMNS if any(c in r for r in rows)]
    return metrics + sorted({k for r in rows for k in r} - set(metrics) - {"method"})


def _columns(rows: list[dict], wide: bool) -> list[tuple[str, str]]:
    cols = [(c, c) for c in _metric_names(rows)] if wide else list(NARROW)
    return [(c, label) for c, label in cols if any(r.get(c) is not None for r in rows)]


def metrics_table(summary: dict, title: str, wide: bool = True) -> Table:
    from rich import box

    from tagtree.stages.sample import metrics_rows

    rows = metrics_rows(summary)
    cols = _columns(rows, wide)
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    t.add_column("method", no_wrap=True)
    for _, label in cols:
        t.add_column(label, justify="right")
    for r in rows:
        t.add_row(r["method"], *(_cell(c, r.get(c)) for c, _ in cols))
    return t


def metrics_text(summary: dict, fmt: str, extra: dict) -> str:
    """The comparison as json (every metric, notes, skipped), csv or markdown."""
    import csv
    import io
    import json

    from tagtree.stages.sample import metrics_rows

    rows = metrics_rows(summary)
    if fmt == "json":
        return json.dumps(extra | {"pool": summary["pool"], "budget": summary["budget"],
                                   "tree_version": summary["tree_version"],
                                   "kl_before": summary["kl_before"],
                                   "align_level": summary.get("align_level"),
                                   "kl_before_aligned": summary.get("kl_before_aligned"),
                                   "methods": rows,
                                   "skipped": summary["skipped"]}, indent=2)
    metrics = _metric_names(rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, ["method", *metrics], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue().rstrip("\n")
    lines = ["| method | " + " | ".join(metrics) + " |",
             "|---|" + "---:|" * len(metrics)]
    lines += ["| " + r["method"] + " | " + " | ".join(_cell(c, r.get(c)) for c in metrics)
              + " |" for r in rows]
    return "\n".join(lines + [""] + [f"- {n}" for n in extra.get("notes", [])]).rstrip()


def _run(cfg, target, kind, methods, seeds=1, quiet=False):
    from tagtree.stages.sample import run_sample

    run_id, names = _prepare(cfg, target, kind, quiet)
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
                               help="tags|random|instag|deita|kcenter|quality|kmeans "
                               "[tags]."),
    align: str = typer.Option(None, "--align", help="penalty|quota|none [penalty]."),
    seed: int = typer.Option(None, "--seed", help="Random seed [0]."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the selection here: a path "
                             "with a file extension (sel.jsonl) is the data file, the manifest "
                             "goes beside it (sel.manifest.json); one without is a directory."),
    fmt: str = ExportFormatOption,
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Select a budgeted subset of the pool through the knowledge tree (TAGS or a baseline)."""
    cfg = settings(config, {"store.db": db, "sample.budget": budget, "sample.method": method,
                            "sample.align": align, "sample.seed": seed, "export.format": fmt})
    run_id, summary = _run(cfg, target, "sample", [cfg.sample.method])
    console.print(metrics_table(summary, f"run {run_id}", wide=False))
    console.print(summary["line"], markup=False, highlight=False, soft_wrap=True)
    if summary["target_instances"] and not summary["target_grounded"]:
        err_console.print("warning: the target sample has no grounding on this tree, so the "
                          "selection is not aligned (tag and ground it first)")
    if out is not None:
        from tagtree.stages.export import run_export

        result = run_export(cfg.store.db, cfg.model_dump(), run_id, str(out))
        console.print(result["line"], markup=False, highlight=False, soft_wrap=True)
        for path in result.get("config", []):
            if path.endswith(".yml"):
                console.print(Path(path).read_text(encoding="utf-8"), markup=False,
                              highlight=False)


def compare(
    budget: str = typer.Option(None, "--budget", "-b", help="Fraction or count [0.05]."),
    target: Path = typer.Option(None, "--target", help="Target sample to measure KL against: a "
                                "file is ingested, tagged and grounded first when needed "
                                "[default: every stored target sample]."),
    seeds: int = typer.Option(20, "--seeds", help="Random and kmeans baselines: mean over this "
                              "many seeds (kmeans: while n x k x seeds <= 2e7, else one draw, "
                              "with a note)."),
    wide: bool = typer.Option(False, "--wide", help="Every metric (the default table fits 80 "
                              "columns)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table|json|csv|markdown; json "
                            "and csv carry every metric."),
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Run TAGS and every baseline on the current pool and print their metrics side by side."""
    from tagtree.sampling import METHODS
    from tagtree.stages.sample import comparison_notes

    if fmt not in ("table", "json", "csv", "markdown"):
        raise TagtreeError(f"unknown --format {fmt!r}; choose table, json, csv or markdown")
    cfg = settings(config, {"store.db": db, "sample.budget": budget})
    quiet = fmt != "table"
    run_id, summary = _run(cfg, target, "compare", list(METHODS), seeds, quiet=quiet)
    notes = comparison_notes(cfg.store.db, run_id, summary)
    if quiet:
        typer.echo(metrics_text(summary, fmt, {"run_id": run_id, "notes": notes}))
    else:
        table = metrics_table(summary, f"compare: budget {cfg.sample.budget}, pool "
                                       f"{summary['pool']:,} (run {run_id})", wide=wide)
        if wide:  # every figure in full, however wide: a narrow terminal wraps, never cuts
            from rich.measure import Measurement

            from tagtree.cli.common import SafeConsole

            natural = Measurement.get(console, console.options.update_width(10_000), table)
            # rich caps a print at the console's width: a console as wide as the table
            SafeConsole(width=max(console.width, natural.maximum)).print(table)
        else:
            console.print(table)
        if not wide:
            console.print(NARROW_LEGEND, style="dim", highlight=False)
        if summary["aligned"]:
            console.print(kl_before_line(summary))
        for note in notes:
            console.print(f"note: {note}", markup=False, highlight=False)
    for method, why in summary["skipped"].items():
        err_console.print(f"skipped {method}: {why}", markup=False, highlight=False)
