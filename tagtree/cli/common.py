"""Shared CLI pieces: the --db/--config options, config loading, consoles."""

from __future__ import annotations

import os
from typing import Any

import typer
from rich.console import Console

from tagtree.config import Config, load_config

console = Console()
err_console = Console(stderr=True)

# No [brackets] in help texts: Rich reads them as markup and drops them.
DbOption = typer.Option(None, "--db",
                        help="DuckDB file (env TAGTREE_DB; default: tagtree.duckdb).")
ConfigOption = typer.Option(
    None, "--config", "-c", help="Recipe file (TOML) (default: ./tagtree.toml if present)."
)


def settings(config_path: str | None, overrides: dict[str, Any]) -> Config:
    cfg, _ = load_config(config_path, overrides)
    return cfg


def quiet_prefect(console_logs: bool = False) -> None:
    """Offline-friendly Prefect defaults for commands that run flows. Run logs stay at INFO, so
    every stage's line reaches the API (the UI's Logs tab); the console shows only warnings
    unless ``console_logs`` (``tagtree serve``, whose console is the runs' log)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    if not console_logs:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
