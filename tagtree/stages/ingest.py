"""Ingest stage: files -> instances / instance_sources / datasets / quarantine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tagtree.stages.common import as_config, open_store
from tagtree.stages.resources import Resources
from tagtree.stages.results import IngestResult


def ingest(store, inputs: Sequence[str | Path], *, config=None,
           resources: Resources | None = None, role: str = "pool",
           dataset: str | None = None,
           progress: Callable[[str, int], None] | None = None) -> IngestResult:
    """Load ``inputs`` (JSONL/JSON/Parquet files or Hugging Face dataset directories) as
    ``role`` "pool" or "target"; bad rows go to quarantine. A pool reads ``ingest.format``,
    ``ingest.dataset`` and ``ingest.split``; a target sample is detected (the curate flow does
    the same). ``dataset`` names the dataset (default: each file's name). No resources needed;
    the parameter keeps the calling convention."""
    from tagtree.io.ingest import ingest_files

    config = as_config(config)
    ing, pool = config.ingest, role == "pool"
    with open_store(store) as store:
        summary = ingest_files(store, [str(p) for p in inputs],
                               fmt=ing.format if pool else "auto",
                               dataset=dataset or (ing.dataset if pool else None), role=role,
                               batch_rows=ing.batch_rows, workers=ing.workers,
                               memory_limit=ing.memory_limit, split=ing.split if pool else None,
                               progress=progress)
    return IngestResult.of(summary.to_dict() | {"line": summary.line(), "valid": summary.valid})
