"""Report task: tree_nodes, instance_nodes, selections, scores, runs, ... -> one HTML file."""

from __future__ import annotations

import hashlib
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from tagtree.io.atomic import write_text_atomic
from tagtree.io.report_data import gather_report_data
from tagtree.io.store import Store
from tagtree.report import render_report
from tasks.policies import retry_unless_user_error


# Not cached: the inputs are a db path and a run id, which do not change when the tables do,
# and rendering takes about a second.
@task(name="report", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, timeout_seconds=900,
      retry_condition_fn=retry_unless_user_error)
def report(db: str, cfg: dict, run_id: str, out: str, location: str | None = None) -> dict:
    """Render the run's report to ``out``; ``location``: where it is published (the link)."""
    # Not read_only: DuckDB refuses a read-only connection next to a read-write one in the same
    # process (a flow or worker may hold one), and this task writes nothing anyway.
    with Store(db) as store:
        data = gather_report_data(store, run_id=run_id or None, cfg=cfg)
    page = render_report(data)
    path = Path(out).resolve()
    write_text_atomic(path, page)  # a reader never sees half a report
    summary = {
        "path": str(path), "bytes": len(page.encode()), "run_id": data["meta"]["run_id"],
        "tree_version": data["meta"]["tree_version"], "method": data["meta"]["method"],
        "nodes": len(data["tree"]["nodes"]), "selected": data["tree"]["n_selected"],
        "kl": {r["method"]: r["kl"] for r in data["kl"]},
        "sha256": hashlib.sha256(page.encode()).hexdigest(),
    }
    if TaskRunContext.get() is not None:  # artifacts need a run; task.fn() in tests has none
        _publish(summary | {"link": location or path.as_uri()}, cfg)
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
