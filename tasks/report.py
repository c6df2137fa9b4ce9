"""Report task: tree_nodes, instance_nodes, selections, scores, runs, ... -> one HTML file
(``tagtree.stages.report``), plus link and summary artifacts."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from tagtree.stages.report import write_report
from tasks.policies import retry_unless_user_error


# Not cached: the inputs are a db path and a run id, which do not change when the tables do,
# and rendering takes about a second.
@task(name="report", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, timeout_seconds=900,
      retry_condition_fn=retry_unless_user_error)
def report(db: str, cfg: dict, run_id: str, out: str, location: str | None = None) -> dict:
    """Render the run's report to ``out``; ``location``: where it is published (the link)."""
    summary, _ = write_report(db, cfg, run_id, out)
    if TaskRunContext.get() is not None:  # artifacts need a run; task.fn() in tests has none
        _publish(summary | {"link": location or Path(summary["path"]).as_uri()}, cfg)
    return summary


def _publish(summary: dict, cfg: dict) -> None:
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    from tasks.policies import artifact_key

    create_link_artifact(key=artifact_key("tagtree-report", cfg), link=summary["link"],
                         link_text="tagtree report (HTML)",
                         description=f"Report of run {summary['run_id']}")
    kl = ", ".join(f"{m}: {v:.3f}" for m, v in summary["kl"].items()) or "no target sample"
    create_markdown_artifact(key=artifact_key("tagtree-report-summary", cfg), markdown=(
        f"### tagtree report\n\n| | |\n|---|---|\n| file | `{summary['link']}` "
        f"({summary['bytes'] / 1e6:.1f} MB) |\n| run | `{summary['run_id']}` |\n"
        f"| tree | `{summary['tree_version']}` ({summary['nodes']} nodes) |\n"
        f"| selection | {summary['method']}: {summary['selected']:,} instances |\n"
        f"| KL(target ‖ ·) | {kl} |\n"), description="Key figures of the report")
