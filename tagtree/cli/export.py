"""`tagtree export`: write a stored selection (and its manifest) to files again."""

from __future__ import annotations

from pathlib import Path

import typer

from tagtree.cli.common import ConfigOption, DbOption, ExportFormatOption, console, settings
from tagtree.errors import TagtreeError


def register(app: typer.Typer) -> None:
    app.command(epilog="Example: tagtree export --format llamafactory --out out/train")(export)


def export(
    run: str = typer.Option(None, "--run", help="Run id [latest run with a selection]."),
    method: str = typer.Option(None, "--method", "-m", help="Which of the run's selections "
                               "[sample.method: tags]."),
    out: Path = typer.Option(None, "--out", "-o", help="A path with a file extension "
                             "(sel.jsonl) is the data file, one without is a directory "
                             "[export.out]."),
    fmt: str = ExportFormatOption,
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Write a run's stored selection in another format or place, without selecting again."""
    from tagtree.io.store import Store
    from tagtree.stages.export import export as export_stage

    cfg = settings(config, {"store.db": db, "sample.method": method, "export.format": fmt})
    with Store(cfg.store.db) as store:
        run_id = run or store.latest_selection_run()
        if run_id is None:
            raise TagtreeError("no selection in the store (run `tagtree sample` first)")
        result = export_stage(store, config=cfg, run_id=run_id,
                              out=str(out) if out else None)
    console.print(result.line, markup=False, highlight=False, soft_wrap=True)
