"""`tagtree report`: write the HTML report of a run (tree, selection, alignment, manifest)."""

from __future__ import annotations

from pathlib import Path

import typer

from tagtree.cli.common import ConfigOption, DbOption, console, settings


def register(app: typer.Typer) -> None:
    app.command(epilog="Example: tagtree report --db pool.duckdb --out out/report.html")(report)


def report(
    run: str = typer.Option(None, "--run", help="Run id [latest run with a selection]."),
    out: Path = typer.Option(None, "--out", "-o",
                             help="HTML file to write [<export.out>/<report.filename>, or "
                             "beside an export.out file]."),
    method: str = typer.Option(None, "--method",
                               help="Selection shown as 'selected' [the run's sample.method]."),
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Write a run's report: one self-contained HTML page that works offline.

    It shows the knowledge tree, where the pool, the selection and the target put their mass,
    KL to the target, coverage, entropy, quality, baselines and the run manifest.
    """
    from tagtree.io.export import report_path
    from tagtree.io.store import Store
    from tagtree.stages.report import report as report_stage

    cfg = settings(config, {"store.db": db})
    target = out or report_path(cfg.export.out, cfg.export.name, cfg.report.filename)
    with Store(cfg.store.db, read_only=True) as store, console.status("gathering..."):
        # a failed write leaves the previous report as it was
        result = report_stage(store, config=cfg, run_id=run, out=target, method=method)
    console.print(result.line, markup=False, highlight=False, soft_wrap=True)
