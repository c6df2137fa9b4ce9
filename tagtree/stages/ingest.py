"""Ingest stage: files -> instances / instance_sources / datasets / quarantine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tagtree.stages.common import as_config, open_store
from tagtree.stages.resources import Resources
from tagtree.stages.results import IngestResult


def is_hf_object(obj) -> bool:
    """A ``datasets.Dataset`` or ``DatasetDict`` held in memory (not a path)."""
    return type(obj).__module__.split(".")[0] == "datasets"


def ingest(store, inputs, *, config=None, resources: Resources | None = None,
           role: str = "pool", dataset: str | None = None,
           progress: Callable[[str, int], None] | None = None) -> IngestResult:
    """Load ``inputs`` as ``role`` "pool" or "target"; bad rows go to quarantine. ``inputs``:
    JSONL/JSON/Parquet files or Hugging Face dataset directories (paths), and/or
    ``datasets.Dataset`` / ``DatasetDict`` objects (a notebook's ``load_dataset(...)``; one
    object or a list mixing objects and paths). A pool reads ``ingest.format``,
    ``ingest.dataset`` and ``ingest.split`` (the split of a DatasetDict); a target sample is
    detected (the curate flow does the same). ``dataset`` names the dataset (default: each
    file's name; an object's ``info.dataset_name``, else ``hf-<fingerprint>``). No resources
    needed; the parameter keeps the calling convention."""
    from tagtree.io.ingest import IngestSummary, ingest_files

    config = as_config(config)
    ing, pool = config.ingest, role == "pool"
    if isinstance(inputs, (str, Path)) or is_hf_object(inputs):
        inputs = [inputs]
    objects = [i for i in inputs if is_hf_object(i)]
    paths = [str(i) for i in inputs if not is_hf_object(i)]
    fmt = ing.format if pool else "auto"
    name = dataset or (ing.dataset if pool else None)
    split = ing.split if pool else None
    summary = IngestSummary()
    with open_store(store) as store:
        if paths:
            summary = ingest_files(store, paths, fmt=fmt, dataset=name, role=role,
                                   batch_rows=ing.batch_rows, workers=ing.workers,
                                   memory_limit=ing.memory_limit, split=split,
                                   progress=progress)
        if objects:
            from tagtree.io.hf import ingest_dataset

            for obj in objects:
                part = ingest_dataset(store, obj, name=name, split=split, role=role, fmt=fmt,
                                      batch_rows=ing.batch_rows)
                summary.files += part.files
                summary.seconds += part.seconds
    return IngestResult.of(summary.to_dict() | {"line": summary.line(), "valid": summary.valid})
