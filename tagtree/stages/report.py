"""Report stage: tree_nodes, instance_nodes, selections, scores, runs, ... -> one HTML file."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tagtree.io.atomic import write_text_atomic
from tagtree.io.store.report import gather_report_data
from tagtree.report_page import render_report
from tagtree.stages.common import as_config, open_store
from tagtree.stages.results import ReportResult


def write_report(store, cfg, run_id: str | None, out: str | Path | None = None, *,
                 method: str | None = None) -> tuple[dict, dict]:
    """Render run ``run_id``'s report (the latest run with a selection when None) to ``out``
    (default: ``report.filename`` beside ``export.out``); returns (summary, the report data)."""
    from tagtree.io.export import report_path

    config = as_config(cfg)
    # Not read_only: DuckDB refuses a read-only connection next to a read-write one in the same
    # process (a flow or worker may hold one), and this stage writes nothing anyway.
    with open_store(store) as store:
        data = gather_report_data(store, run_id=run_id or None, method=method,
                                  cfg=config.model_dump())
    page = render_report(data)
    path = Path(out or report_path(config.export.out, config.export.name,
                                   config.report.filename)).resolve()
    write_text_atomic(path, page)  # a reader never sees half a report
    summary = {
        "path": str(path), "bytes": len(page.encode()), "run_id": data["meta"]["run_id"],
        "tree_version": data["meta"]["tree_version"], "method": data["meta"]["method"],
        "nodes": len(data["tree"]["nodes"]), "selected": data["tree"]["n_selected"],
        "kl": {r["method"]: r["kl"] for r in data["kl"]},  # on the leaves
        # and on the level the budget is aligned on, when that is above the leaves
        "kl_aligned": {r["method"]: r["kl_aligned"] for r in data["kl"] if r.get("level")},
        "sha256": hashlib.sha256(page.encode()).hexdigest(),
    }
    return summary, data


def report(store, *, config=None, resources=None, run_id: str | None = None,
           out: str | Path | None = None, method: str | None = None) -> ReportResult:
    """Write the HTML report of run ``run_id`` (the latest run with a selection when None) to
    ``out``; ``method``: the selection shown as 'selected' (default: the run's)."""
    summary, data = write_report(store, config, run_id, out, method=method)
    meta, tree = data["meta"], data["tree"]
    line = (f"wrote {summary['path']} ({summary['bytes'] / 1e6:.1f} MB): run "
            f"{meta['run_id'] or '-'}, tree {meta['tree_version']} ({len(tree['nodes']):,} "
            f"nodes), {tree['n_selected']:,} of {tree['n_pool']:,} selected by "
            f"{meta['method'] or '-'}")
    kl, level = summary["kl"], next((r["level"] for r in data["kl"] if r.get("level")), 0)
    if level:
        on = summary["kl_aligned"]
        line += (f", KL(target||pool) {on.get('pool', 0):.3f} -> "
                 f"{on.get(meta['method'], 0):.3f} on level {level}")
    elif kl:
        line += f", KL(target||pool) {kl.get('pool', 0):.3f} -> {kl.get(meta['method'], 0):.3f}"
    return ReportResult.of(summary | {"line": line})
