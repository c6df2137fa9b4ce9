"""`tagtree curate`: the main entry point, running the Prefect `curate` flow in-process."""

from __future__ import annotations

from pathlib import Path

import typer

from tagtree.cli.common import ConfigOption, DbOption, console, quiet_prefect, settings


def register(app: typer.Typer) -> None:
    app.command(epilog="Example: tagtree curate examples/self_instruct_alpaca.jsonl "
                       "--target examples/target_coding_math.jsonl")(curate)


def curate(
    inputs: list[Path] = typer.Argument(..., help="Instruction data files (JSONL/JSON/Parquet)."),
    target: Path = typer.Option(None, "--target", help="Target-domain sample to align to."),
    fmt: str = typer.Option(None, "--format", "-f", help="Force the input format [auto]."),
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Run every pipeline stage on the inputs (Prefect flow, ephemeral mode: no server needed)."""
    cfg = settings(config, {"store.db": db, "ingest.format": fmt})
    quiet_prefect()
    from flows.curate import curate as curate_flow

    result = curate_flow(
        inputs=[str(p) for p in inputs], target=str(target) if target else None,
        db=cfg.store.db, config_path=config, overrides={"ingest.format": fmt})
    console.print(result["ingest"]["line"], markup=False, highlight=False)
    if "target" in result:
        console.print("target: " + result["target"]["line"], markup=False, highlight=False)
    console.print(f"store: {result['db']}")
