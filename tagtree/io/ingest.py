"""Ingest stage: files -> ``instances`` (+ ``instance_sources``, ``quarantine``, ``datasets``).

Streams each file in batches, validates every record against the file's format, writes good rows
idempotently (content ids) and bad rows to quarantine with file, line, field and reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa

from tagtree.errors import TagtreeError
from tagtree.formats import (
    FORMATS,
    UNKNOWN_FORMAT,
    RecordError,
    detect_format,
    normalize_record,
)
from tagtree.io.readers import iter_records

_RAW_QUARANTINE_CHARS = 2000  # enough to see what went wrong, bounded for huge bad lines


@dataclass
class FileSummary:
    path: str
    dataset: str
    format: str | None
    read: int = 0
    loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0


@dataclass
class IngestSummary:
    files: list[FileSummary] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def loaded(self) -> int:
        return sum(f.loaded for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def quarantined(self) -> int:
        return sum(f.quarantined for f in self.files)

    @property
    def valid(self) -> int:
        return self.loaded + self.duplicates

    def line(self) -> str:
        rate = (self.valid + self.quarantined) / self.seconds if self.seconds else 0.0
        return (f"ingested {len(self.files)} file(s): loaded {self.loaded:,} / duplicates "
                f"{self.duplicates:,} / quarantined {self.quarantined:,} "
                f"({self.seconds:.1f}s, {rate:,.0f} rows/s)")

    def to_dict(self) -> dict:
        return {"files": [asdict(f) for f in self.files], "loaded": self.loaded,
                "duplicates": self.duplicates, "quarantined": self.quarantined,
                "seconds": round(self.seconds, 3)}


def dataset_name(path: str) -> str:
    name = Path(path).name
    for suffix in (".gz", ".parquet", ".jsonl", ".ndjson", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name or "dataset"


class _Batch:
    """Column buffers for one batch; Arrow tables are built from them in one go."""

    def __init__(self):
        self.inst = {k: [] for k in ("id", "dataset", "format", "instruction", "response", "system",
                                     "n_turns", "conversation", "raw", "source_file",
                                     "source_line")}
        self.src = {k: [] for k in ("instance_id", "dataset", "source_file", "source_line")}
        self.quar = {k: [] for k in ("source_file", "source_line", "dataset", "field", "reason",
                                     "message", "raw")}
        self.ids: set[str] = set()
        self.rows = 0

    def tables(self):
        return pa.table(self.inst), pa.table(self.src), pa.table(self.quar)


def ingest_files(
    store,
    paths: Iterable[str],
    *,
    fmt: str = "auto",
    dataset: str | None = None,
    role: str = "pool",
    batch_rows: int = 50_000,
    progress: Callable[[str, int], None] | None = None,
) -> IngestSummary:
    """Load every file into ``store``. Raises TagtreeError only for unusable inputs (missing
    file, unknown format name); bad rows are quarantined, never fatal."""
    if fmt != "auto" and fmt not in FORMATS:
        raise TagtreeError(f"unknown format {fmt!r}; choose one of: auto, {', '.join(FORMATS)}")
    paths = list(paths)
    if not paths:
        raise TagtreeError("no input files given")
    for p in paths:
        if not str(p).startswith(("s3://",)) and not Path(p).exists():
            raise TagtreeError(f"input file not found: {p}")
    summary = IngestSummary()
    start = time.perf_counter()
    for path in paths:
        summary.files.append(
            _ingest_one(store, str(path), fmt, dataset or dataset_name(str(path)), role,
                        batch_rows, progress))
    summary.seconds = time.perf_counter() - start
    return summary


def _ingest_one(store, path, fmt, dataset, role, batch_rows, progress) -> FileSummary:
    summary = FileSummary(path=path, dataset=dataset, format=None if fmt == "auto" else fmt)
    file_fmt = summary.format
    store.clear_quarantine(path)
    batch = _Batch()

    def flush():
        nonlocal batch
        inst, src, quar = batch.tables()
        new = store.write_ingest_batch(inst, src, quar)
        summary.loaded += new
        summary.duplicates += inst.num_rows - new + (len(batch.src["instance_id"]) - inst.num_rows)
        if progress:
            progress(path, summary.read)
        batch = _Batch()

    for line, record, raw in iter_records(path):
        summary.read += 1
        batch.rows += 1
        try:
            if isinstance(record, RecordError):
                raise record
            if file_fmt is None:
                if isinstance(record, dict):
                    file_fmt = detect_format(record)
                if file_fmt is None:
                    raise RecordError(
                        UNKNOWN_FORMAT, None,
                        "cannot tell the format from the keys "
                        f"{sorted(record)[:6] if isinstance(record, dict) else type(record).__name__}"
                        "; expected e.g. instruction/output, conversations, messages, prompt")
            norm = normalize_record(record, file_fmt)
        except RecordError as err:
            summary.quarantined += 1
            q = batch.quar
            q["source_file"].append(path)
            q["source_line"].append(line)
            q["dataset"].append(dataset)
            q["field"].append(err.field)
            q["reason"].append(err.reason)
            q["message"].append(err.message)
            q["raw"].append(raw[:_RAW_QUARANTINE_CHARS])
        else:
            s = batch.src
            s["instance_id"].append(norm.id)
            s["dataset"].append(dataset)
            s["source_file"].append(path)
            s["source_line"].append(line)
            if norm.id not in batch.ids:  # duplicates inside one batch: keep the first
                batch.ids.add(norm.id)
                i = batch.inst
                i["id"].append(norm.id)
                i["dataset"].append(dataset)
                i["format"].append(file_fmt)
                i["instruction"].append(norm.instruction)
                i["response"].append(norm.response)
                i["system"].append(norm.system)
                i["n_turns"].append(len(norm.turns))
                i["conversation"].append(orjson.dumps(norm.turns).decode())
                i["raw"].append(raw)
                i["source_file"].append(path)
                i["source_line"].append(line)
        if batch.rows >= batch_rows:
            flush()
    flush()
    summary.format = file_fmt
    store.register_dataset(dataset, role, file_fmt)
    return summary
