"""Export task: selections + instances -> selection file(s) + manifest on disk, rows in exports
(``tagtree.stages.export``)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tagtree.stages.export import run_export


# Not cached: writing files is cheap and the files may have been moved or deleted since.
@task(name="export", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
      timeout_seconds=3600)
def export(db: str, cfg: dict, run_id: str, out: str, tree_version: str | None = None,
           location: str | None = None) -> dict:
    """Returns {run_id, method, rows, files (paths written), manifest (path), tree_version}."""
    return run_export(db, cfg, run_id, out, tree_version=tree_version, location=location)
