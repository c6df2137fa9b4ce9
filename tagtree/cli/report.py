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
    from tagtree.io.report_data import gather_report_data
    from tagtree.io.store import Store
    from tagtree.report import render_report

    cfg = settings(config, {"store.db": db})
    target = out or report_path(cfg.export.out, cfg.export.name, cfg.report.filename)
    with Store(cfg.store.db, read_only=True) as store, console.status("gathering..."):
        data = gather_report_data(store, run_id=run, method=method, cfg=cfg.model_dump())
    page = render_report(data)
    from tagtree.io.atomic import write_text_atomic

    write_text_atomic(target, page)  # a failed write leaves the previous report as it was
    meta, tree = data["meta"], data["tree"]
    kl = {r["method"]: r["kl"] for r in data["kl"]}
    line = (f"wrote {target} ({len(page.encode()) / 1e6:.1f} MB): run {meta['run_id'] or '-'}, "
            f"tree {meta['tree_version']} ({len(tree['nodes']):,} nodes), "
            f"{tree['n_selected']:,} of {tree['n_pool']:,} selected by {meta['method'] or '-'}")
    if kl:
        line += f", KL(target||pool) {kl.get('pool', 0):.3f} -> {kl.get(meta['method'], 0):.3f}"
    console.print(line, markup=False, highlight=False, soft_wrap=True)
