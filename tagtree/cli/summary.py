"""The summary table `tagtree curate` prints at the end, built from the curate flow's result
dict (``{"run_id", "db", <stage>: {summary of that stage's task}, ...}``)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tagtree.sanitize import printable
from tagtree.stages.results import stage_figures  # noqa: F401 - flows import it from here

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
