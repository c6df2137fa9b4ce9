"""Shared CLI pieces: the --db/--config options, config loading, consoles."""

from __future__ import annotations

import logging
import os
from typing import Any

import typer
from rich.console import Console

from tagtree.config import Config, load_config
from tagtree.sanitize import printable


class SafeConsole(Console):
    """A console that never passes escape sequences from data (LLM tags, file names, instance
    text, error messages) to the terminal: every string it renders -- printed, in a table cell,
    a tree label -- has its control characters shown escaped (``\\x1b[2J``), never obeyed.
    Rich's own styling is added after this, so colours still work."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Rich freezes COLUMNS/LINES read at construction (this console is built at import):
        # without an explicit size, follow the environment at each print instead, so a caller
        # that sets COLUMNS later (a test runner, an embedding program) gets that width.
        if kwargs.get("width") is None:
            self._width = None
        if kwargs.get("height") is None:
            self._height = None

    def render_str(self, text: str, **kwargs: Any):
        return super().render_str(printable(text), **kwargs)


console = SafeConsole()
err_console = SafeConsole(stderr=True)

# No [brackets] in help texts: Rich reads them as markup and drops them.
DbOption = typer.Option(None, "--db",
                        help="DuckDB file (env TAGTREE_DB; default: tagtree.duckdb).")
ConfigOption = typer.Option(
    None, "--config", "-c", help="Recipe file (TOML) (default: ./tagtree.toml if present)."
)
# `sample` and `export` write a selection the same way.
ExportFormatOption = typer.Option(None, "--format", "-f", help="Export format auto|input|jsonl|"
                                  "parquet|hf|llamafactory|axolotl [auto: one training file].")


def settings(config_path: str | None, overrides: dict[str, Any]) -> Config:
    cfg, _ = load_config(config_path, overrides)
    return cfg


def keep_out_of_parameters(overrides: dict[str, Any], key: str) -> None:
    """Move ``key`` from the flow's parameters to its env var: Prefect stores flow-run
    parameters in its database, and a URL may hold ``user:password@``. The in-process flow reads
    the same value from the environment (a flag still beats a recipe file)."""
    import atexit

    from tagtree.config import env_name

    value = overrides.pop(key, None)
    if value is not None:
        name = env_name(key)
        before = os.environ.get(name)
        os.environ[name] = str(value)
        _restore.append((name, before))
        if len(_restore) == 1:
            atexit.register(restore_environment)


_restore: list[tuple[str, str | None]] = []


def restore_environment() -> None:
    """Undo ``keep_out_of_parameters`` once the flow is done: a command run in-process (a test,
    a notebook) must not leave its endpoint in the environment of the next one."""
    while _restore:
        name, before = _restore.pop()
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


class _HideUserErrors(logging.Filter):
    """Drops Prefect's console records about a ``TagtreeError`` (the engine logs the traceback
    of every failed task and flow run at ERROR): the CLI prints the one-line message itself.
    Prefect's API log handler is untouched, so the UI still shows the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from tagtree.errors import user_message

        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and user_message(exc) is not None:
            return False
        text = record.getMessage()
        return "TagtreeError" not in text and "No space left on device" not in text


def hide_user_error_tracebacks() -> None:
    """Install ``_HideUserErrors`` on every console handler of Prefect's loggers (call after
    Prefect is imported, which configures its logging)."""
    names = ["prefect"] + [n for n in logging.root.manager.loggerDict if n.startswith("prefect.")]
    for logger in [logging.root, *map(logging.getLogger, names)]:  # the console is on root
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not any(
                    isinstance(f, _HideUserErrors) for f in handler.filters):
                handler.addFilter(_HideUserErrors())


def quiet_prefect(console_logs: bool = False) -> None:
    """Offline-friendly Prefect defaults for commands that run flows. Run logs stay at INFO, so
    every stage's line reaches the API (the UI's Logs tab); the console shows only warnings
    unless ``console_logs`` (``tagtree serve``, whose console is the runs' log)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    if not console_logs:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
