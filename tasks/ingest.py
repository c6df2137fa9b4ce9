"""Ingest task: files -> instances / instance_sources / quarantine."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tagtree.io.ingest import ingest_files
from tagtree.io.store import Store


# Not cached: ingest is cheap, idempotent (content ids), and must see files that changed.
@task(name="ingest", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
      timeout_seconds=6 * 3600)
def ingest(db: str, inputs: list[str], fmt: str = "auto", dataset: str | None = None,
           role: str = "pool", batch_rows: int = 50_000, workers: int = 0,
           memory_limit: str = "1GB") -> dict:
    with Store(db) as store:
        summary = ingest_files(store, inputs, fmt=fmt, dataset=dataset, role=role,
                               batch_rows=batch_rows, workers=workers, memory_limit=memory_limit)
    return summary.to_dict() | {"line": summary.line()}
