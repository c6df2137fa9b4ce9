"""Export task: selections + instances -> selection file(s) + manifest on disk, rows in exports."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tagtree.config import Config
from tagtree.errors import TagtreeError
from tagtree.io.export import export_selection
from tagtree.io.store import Store


def run_export(db: str, cfg: dict, run_id: str, out: str | None = None, *,
               method: str | None = None, name: str | None = None,
               tree_version: str | None = None, location: str | None = None) -> dict:
    """Write the run's selection (``sample.method`` unless ``method``) to ``out`` (default
    ``export.out``: a file path with an extension, or a directory) in ``export.format``, with a
    manifest of config, tree, budget and metrics.

    ``tree_version``: the tree the run sampled on (the curate flow passes it); unset, the newest
    built tree under which every selected instance is scored. ``location``: where the files will
    be published (an s3:// prefix the flow uploads ``out`` to): the manifest and the ``exports``
    rows name the files there instead of their local paths."""
    config = Config.model_validate(cfg)
    method = method or config.sample.method
    pool = config.sample.pool
    with Store(db) as store:
        metrics = store.selection_metrics(run_id)
        if method not in metrics:
            raise TagtreeError(f"run {run_id} has no '{method}' selection (run `tagtree sample`)")
        tree_version = tree_version or store.scalar(
            "SELECT s.tree_version FROM scores s JOIN selections sel "
            "ON sel.instance_id = s.instance_id JOIN trees t ON t.tree_version = s.tree_version "
            "WHERE sel.run_id = ? AND sel.method = ? GROUP BY s.tree_version "
            "HAVING count(*) = (SELECT count(*) FROM selections WHERE run_id = ? AND method = ?) "
            "ORDER BY max(t.created_at) DESC, s.tree_version DESC LIMIT 1",
            [run_id, method, run_id, method]) or store.latest_tree_version()
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


# Not cached: writing files is cheap and the files may have been moved or deleted since.
@task(name="export", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
      timeout_seconds=3600)
def export(db: str, cfg: dict, run_id: str, out: str, tree_version: str | None = None,
           location: str | None = None) -> dict:
    """Returns {run_id, method, rows, files (paths written), manifest (path), tree_version}."""
    return run_export(db, cfg, run_id, out, tree_version=tree_version, location=location)
