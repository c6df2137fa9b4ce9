"""Export stage: selections + instances -> selection file(s) + manifest on disk, rows in exports."""

from __future__ import annotations

from tagtree.errors import TagtreeError
from tagtree.io.export import export_selection
from tagtree.stages.common import as_config, open_store
from tagtree.stages.results import ExportResult


def run_export(store, cfg, run_id: str, out: str | None = None, *,
               method: str | None = None, name: str | None = None,
               tree_version: str | None = None, location: str | None = None) -> dict:
    """Write the run's selection (``sample.method`` unless ``method``) to ``out`` (default
    ``export.out``: a file path with an extension, or a directory) in ``export.format``, with a
    manifest of config, tree, budget and metrics.

    ``tree_version``: the tree the run sampled on (the curate flow passes it); unset, the newest
    built tree under which every selected instance is scored. ``location``: where the files will
    be published (an s3:// prefix the flow uploads ``out`` to): the manifest and the ``exports``
    rows name the files there instead of their local paths."""
    config = as_config(cfg)
    method = method or config.sample.method
    pool = config.sample.pool
    with open_store(store) as store:
        metrics = store.selection_metrics(run_id)
        if method not in metrics:
            raise TagtreeError(f"run {run_id} has no '{method}' selection (run `tagtree sample`)")
        tree_version = (tree_version or store.selection_tree_version(run_id, method)
                        or store.latest_tree_version())
        manifest = {"tree_version": tree_version, "budget": config.sample.budget,
                    "pool": len(store.pool_ids(pool)), "pool_datasets": pool,
                    "metrics": metrics[method], "compared": {m: v for m, v in metrics.items()
                                                             if m != method},
                    "config": {"sample": config.sample.model_dump(),
                               "score": config.score.model_dump(),
                               "export": config.export.model_dump()}}
        result = export_selection(store, run_id, method, out or config.export.out,
                                  fmt=config.export.format, name=name or config.export.name,
                                  manifest=manifest, location=location)
    return result | {"tree_version": tree_version,
                     "line": f"exported {result['rows']:,} instances ({result['format']}) to "
                             f"{', '.join(result['files'][:-1])} (manifest {result['manifest']})"}


def export(store, *, config=None, resources=None, run_id: str, out: str | None = None,
           method: str | None = None, name: str | None = None,
           tree_version: str | None = None, location: str | None = None) -> ExportResult:
    """Write run ``run_id``'s selection to ``out`` (default ``export.out``) in
    ``export.format`` with its manifest; see ``run_export``. (No resources needed; the
    parameter keeps the calling convention.)"""
    return ExportResult.of(run_export(store, config, run_id, out, method=method, name=name,
                                      tree_version=tree_version, location=location))
