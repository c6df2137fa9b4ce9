"""`tagtree ingest` and `tagtree stats`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tagtree.cli.common import ConfigOption, DbOption, console, err_console, settings
from tagtree.errors import TagtreeError


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples: tagtree ingest data/alpaca.jsonl data/chats.parquet --db pool.duckdb; "
        "tagtree ingest my_dataset_dict/ --split train (a datasets save_to_disk directory)"
    )(ingest)
    app.command(epilog="Example: tagtree stats --db pool.duckdb")(stats)


def ingest(
    inputs: list[Path] = typer.Argument(
        ..., help="JSONL, JSON-array or Parquet files (.gz ok), or Hugging Face dataset "
        "directories (save_to_disk of a Dataset/DatasetDict, Hub-style Parquet folders)."),
    fmt: str = typer.Option(
        None, "--format", "-f", help="alpaca|sharegpt|openai|dolly|prompt_response|turns [auto]."
    ),
    dataset: str = typer.Option(None, "--dataset", help="Dataset name [file name]."),
    target: bool = typer.Option(False, "--target", help="Mark as a target-domain sample."),
    split: str = typer.Option(None, "--split", help="Split of a Hugging Face dataset directory "
                              "with several [the only one, else train]."),
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Load instruction data into the store; bad rows go to quarantine with file, line, reason."""
    from tagtree.io.ingest import ingest_files
    from tagtree.io.store import Store

    cfg = settings(config, {"store.db": db, "ingest.format": fmt, "ingest.dataset": dataset,
                            "ingest.split": split})
    with Store(cfg.store.db) as store, console.status("ingesting...") as status:
        summary = ingest_files(
            store,
            [str(p) for p in inputs],
            fmt=cfg.ingest.format,
            dataset=cfg.ingest.dataset,
            role="target" if target else "pool",
            batch_rows=cfg.ingest.batch_rows,
            workers=cfg.ingest.workers,
            memory_limit=cfg.ingest.memory_limit,
            split=cfg.ingest.split,
            progress=lambda path, n: status.update(f"ingesting {path}: {n:,} rows read"),
        )
        bad = store.quarantine_rows(limit=5) if summary.quarantined else []
    for row in bad:
        err_console.print(
            f"  quarantined {row[0]}:{row[1]} [{row[2]}] {row[3]}",
            markup=False,
            soft_wrap=True,
            highlight=False,
        )
    if summary.quarantined > len(bad):
        err_console.print(
            f"  ... see `tagtree stats --db {cfg.store.db}` for all quarantine reasons"
        )
    console.print(summary.line(), markup=False, highlight=False, soft_wrap=True)
    if summary.valid == 0:
        raise TagtreeError("nothing loaded: every row was quarantined or the input was empty")


def stats(db: str = DbOption, config: str = ConfigOption) -> None:
    """Counts per dataset and format, quarantine reasons, and what later stages have stored."""
    from tagtree.io.store import Store

    cfg = settings(config, {"store.db": db})
    with Store(cfg.store.db, read_only=True) as store:
        s = store.stats()
        annotated = store.annotation_stats(cfg.llm.price_in_per_mtok, cfg.llm.price_out_per_mtok,
                                           cfg.llm.batch_price_share)
    console.print(f"[bold]{cfg.store.db}[/]: {s['instances']:,} distinct instances")
    t = Table("dataset", "role", "format", "distinct", "rows", title="datasets")
    for name, role, fmt, distinct, rows in s["datasets"]:
        t.add_row(name, role, fmt or "?", f"{distinct:,}", f"{rows:,}")
    console.print(t)
    if s["quarantine"]:
        q = Table("reason", "field", "rows", title="quarantine")
        for reason, field, n in s["quarantine"]:
            q.add_row(reason, field, f"{n:,}")
        console.print(q)
    else:
        console.print("quarantine: empty")
    if annotated:
        from tagtree.cli.annotate import annotation_table

        console.print(annotation_table(annotated))
