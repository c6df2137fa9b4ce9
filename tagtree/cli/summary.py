"""The summary table `tagtree curate` prints at the end, built from the curate flow's result
dict (``{"run_id", "db", <stage>: {summary of that stage's task}, ...}``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tagtree.sanitize import printable

_MAX_FIGURES = 6
_SKIP = {"line", "seconds", "files", "sha256", "path", "run_id", "table"}


def _figure(value: Any) -> str | None:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, str) and len(value) <= 40:
        return value
    return None


def stage_figures(summary: dict) -> str:
    """One line for a stage: its own ``line`` if it has one, else its scalar figures."""
    if isinstance(summary.get("line"), str):
        return summary["line"]
    parts = []
    for key, value in summary.items():
        shown = None if key in _SKIP else _figure(value)
        if key == "bytes" and isinstance(value, int):
            shown = f"{value / 1e6:.1f} MB"
        if shown is not None:
            parts.append(f"{key.replace('_', ' ')} {shown}")
    return ", ".join(parts[:_MAX_FIGURES])


_NOT_STAGES = {"timings", "outputs"}


def summary_table(result: dict) -> Table:
    """One row per stage summary in ``result``; seconds from the stage or ``result["timings"]``."""
    timings = result.get("timings") if isinstance(result.get("timings"), dict) else {}
    table = Table("stage", "figures", "seconds", title=f"curate run {result.get('run_id', '?')}",
                  title_justify="left", show_lines=False)
    for stage, summary in result.items():
        if not isinstance(summary, dict) or stage in _NOT_STAGES:
            continue
        seconds = summary.get("seconds", timings.get(stage))
        table.add_row(Text(stage, style="bold cyan"), Text(printable(stage_figures(summary))),
                      Text(f"{seconds:,.1f}" if isinstance(seconds, (int, float)) else ""))
    return table


def print_summary(result: dict, console: Console | None = None) -> None:
    """Print the table, then where the store, the outputs and the report are."""
    console = console or Console()
    console.print(summary_table(result))
    outputs = dict(result.get("outputs") or {})
    report = result.get("report") if isinstance(result.get("report"), dict) else {}
    if report.get("path"):
        outputs.setdefault("report", report["path"])
    if result.get("db"):
        console.print(Text(printable(f"store:  {result['db']}")))
    for name, value in outputs.items():
        shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        console.print(Text(printable(f"{name}: {shown}"),
                           style="bold green" if name == "report" else ""))
