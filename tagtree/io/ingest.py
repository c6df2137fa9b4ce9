"""Ingest stage: files -> ``instances`` (+ ``instance_sources``, ``quarantine``, ``datasets``).

Streams each file in batches, validates every record against the file's format, writes good rows
idempotently (content ids) and bad rows to quarantine with file, line, field and reason.
Large uncompressed JSONL files are parsed by worker processes (one per core) in byte-range
chunks while this process writes to DuckDB; everything else is parsed in-process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tagtree.errors import TagtreeError
from tagtree.formats import (
    FORMATS,
    UNKNOWN_FORMAT,
    RecordError,
    detect_format,
    normalize_record,
)
from tagtree.io.readers import iter_records, parse_line, sniff_container

_RAW_QUARANTINE_CHARS = 2000  # enough to see what went wrong, bounded for huge bad lines
PARALLEL_MIN_BYTES = 64 << 20  # below this, starting worker processes costs more than it saves
CHUNK_BYTES = 16 << 20


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
        return (
            f"ingested {len(self.files)} file(s): loaded {self.loaded:,} / duplicates "
            f"{self.duplicates:,} / quarantined {self.quarantined:,} "
            f"({self.seconds:.1f}s, {rate:,.0f} rows/s)"
        )

    def to_dict(self) -> dict:
        return {
            "files": [asdict(f) for f in self.files],
            "loaded": self.loaded,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "seconds": round(self.seconds, 3),
        }


def dataset_name(path: str) -> str:
    name = Path(path).name
    for suffix in (".gz", ".parquet", ".jsonl", ".ndjson", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name or "dataset"


@dataclass
class ParsedBatch:
    """One batch as Arrow tables ready for the store, plus its counts."""

    instances: pa.Table
    sources: pa.Table
    quarantine: pa.Table
    read: int
    quarantined: int

    def shift_lines(self, offset: int) -> ParsedBatch:
        """Workers number lines from their chunk's start; make them file line numbers."""
        if not offset:
            return self

        def shift(t: pa.Table, col: str) -> pa.Table:
            i = t.schema.get_field_index(col)
            return t.set_column(i, col, pc.add(t[col], pa.scalar(offset, pa.int64())))

        return ParsedBatch(
            shift(self.instances, "source_line"),
            shift(self.sources, "source_line"),
            shift(self.quarantine, "source_line"),
            self.read,
            self.quarantined,
        )


def _const(value, n: int, typ=pa.string()) -> pa.Array:
    return pa.array([value] * n, typ)


class _Builder:
    """Column buffers for one batch; Arrow tables are built from them in one go."""

    def __init__(self, path: str, dataset: str, fmt: str | None):
        self.path, self.dataset, self.fmt = path, dataset, fmt
        self.ids, self.instr, self.resp, self.system, self.turns, self.raw, self.line = (
            [],
            [],
            [],
            [],
            [],
            [],
            [],
        )
        self.src_ids, self.src_lines = [], []
        self.q_line, self.q_field, self.q_reason, self.q_msg, self.q_raw = [], [], [], [], []
        self.seen: set[str] = set()
        self.read = 0

    def add(self, line: int, record, raw: str) -> None:
        self.read += 1
        try:
            if isinstance(record, RecordError):
                raise record
            if self.fmt is None:
                self.fmt = detect_format(record) if isinstance(record, dict) else None
                if self.fmt is None:
                    keys = sorted(record)[:6] if isinstance(record, dict) else type(record).__name__
                    raise RecordError(
                        UNKNOWN_FORMAT,
                        None,
                        f"cannot tell the format from the keys {keys}; expected e.g. "
                        "instruction/output, conversations, messages, prompt",
                    )
            norm = normalize_record(record, self.fmt)
        except RecordError as err:
            self.q_line.append(line)
            self.q_field.append(err.field)
            self.q_reason.append(err.reason)
            self.q_msg.append(err.message)
            self.q_raw.append(raw[:_RAW_QUARANTINE_CHARS])
            return
        self.src_ids.append(norm.id)
        self.src_lines.append(line)
        if norm.id in self.seen:  # duplicate inside this batch: provenance only
            return
        self.seen.add(norm.id)
        self.ids.append(norm.id)
        self.instr.append(norm.instruction)
        self.resp.append(norm.response)
        self.system.append(norm.system)
        self.turns.append(len(norm.turns))
        self.raw.append(raw)
        self.line.append(line)

    def build(self) -> ParsedBatch:
        n, m, q = len(self.ids), len(self.src_ids), len(self.q_line)
        instances = pa.table(
            {
                "id": self.ids,
                "dataset": _const(self.dataset, n),
                "format": _const(self.fmt, n),
                "instruction": self.instr,
                "response": self.resp,
                "system": self.system,
                "n_turns": pa.array(self.turns, pa.int32()),
                "raw": self.raw,
                "source_file": _const(self.path, n),
                "source_line": pa.array(self.line, pa.int64()),
            }
        )
        sources = pa.table(
            {
                "instance_id": self.src_ids,
                "dataset": _const(self.dataset, m),
                "source_file": _const(self.path, m),
                "source_line": pa.array(self.src_lines, pa.int64()),
            }
        )
        quarantine = pa.table(
            {
                "source_file": _const(self.path, q),
                "source_line": pa.array(self.q_line, pa.int64()),
                "dataset": _const(self.dataset, q),
                "field": pa.array(self.q_field, pa.string()),
                "reason": self.q_reason,
                "message": self.q_msg,
                "raw": self.q_raw,
            }
            if q
            else {
                k: pa.array([], t)
                for k, t in (
                    ("source_file", pa.string()),
                    ("source_line", pa.int64()),
                    ("dataset", pa.string()),
                    ("field", pa.string()),
                    ("reason", pa.string()),
                    ("message", pa.string()),
                    ("raw", pa.string()),
                )
            }
        )
        return ParsedBatch(instances, sources, quarantine, self.read, q)


def parse_batches(
    records: Iterable, path: str, dataset: str, fmt: str | None, batch_rows: int
) -> Iterator[tuple[ParsedBatch, str | None]]:
    """Group ``(line, record, raw)`` triples into parsed batches; yields each with the format."""
    builder = _Builder(path, dataset, fmt)
    for line, record, raw in records:
        builder.add(line, record, raw)
        if builder.read >= batch_rows:
            yield builder.build(), builder.fmt
            builder = _Builder(path, dataset, builder.fmt)
    if builder.read:
        yield builder.build(), builder.fmt


# -- parallel parsing of big JSONL files --------------------------------------------------------
def _chunk_bounds(path: str, chunk_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges that start at line starts, each about ``chunk_bytes`` long."""
    size = os.path.getsize(path)
    bounds, start = [], 0
    with open(path, "rb") as fh:
        while start < size:
            fh.seek(min(start + chunk_bytes, size))
            fh.readline()  # move to the next line start
            end = min(fh.tell(), size)
            bounds.append((start, end))
            start = end
    return bounds


def _parse_chunk(args) -> tuple[ParsedBatch, int]:
    """Worker: parse one byte range; line numbers count from 1 inside the chunk."""
    path, start, end, dataset, fmt = args
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()

    def records():
        for i, raw in enumerate(lines, start=1):
            parsed = parse_line(raw, first=start == 0 and i == 1)
            if parsed is not None:
                yield i, *parsed

    batch, _ = next(
        parse_batches(records(), path, dataset, fmt, batch_rows=len(lines) + 1), (None, None)
    )
    if batch is None:
        batch = _Builder(path, dataset, fmt).build()
    return batch, len(lines)


def _detect_file_format(path: str) -> str | None:
    for _, record, _ in iter_records(path):
        if isinstance(record, dict) and (fmt := detect_format(record)):
            return fmt
    return None


def _parallel_batches(path: str, dataset: str, fmt: str | None, workers: int):
    fmt = fmt or _detect_file_format(path)
    jobs = [(path, s, e, dataset, fmt) for s, e in _chunk_bounds(path, CHUNK_BYTES)]
    # spawn, not fork: DuckDB's threads are running in this process. At most 2 chunks per worker
    # are parsed ahead of the writer, so memory stays bounded whatever the file size.
    with mp.get_context("spawn").Pool(workers) as pool:
        ahead = deque(pool.apply_async(_parse_chunk, (job,)) for job in jobs[: 2 * workers])
        next_job = len(ahead)
        line_offset = 0
        while ahead:
            batch, n_lines = ahead.popleft().get()
            if next_job < len(jobs):
                ahead.append(pool.apply_async(_parse_chunk, (jobs[next_job],)))
                next_job += 1
            yield batch.shift_lines(line_offset), fmt
            line_offset += n_lines


# -- driver -------------------------------------------------------------------------------------
def ingest_files(
    store,
    paths: Iterable[str],
    *,
    fmt: str = "auto",
    dataset: str | None = None,
    role: str = "pool",
    batch_rows: int = 50_000,
    workers: int | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> IngestSummary:
    """Load every file into ``store``. Raises TagtreeError only for unusable inputs (missing
    file, unknown format name); bad rows are quarantined, never fatal."""
    if fmt != "auto" and fmt not in FORMATS:
        raise TagtreeError(f"unknown format {fmt!r}; choose one of: auto, {', '.join(FORMATS)}")
    paths = [str(p) for p in paths]
    if not paths:
        raise TagtreeError("no input files given")
    for p in paths:
        if not Path(p).exists():
            raise TagtreeError(f"input file not found: {p}")
        if Path(p).is_dir():
            raise TagtreeError(f"{p} is a directory; pass the files in it")
    workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    summary = IngestSummary()
    start = time.perf_counter()
    for path in paths:
        summary.files.append(
            _ingest_one(
                store,
                path,
                None if fmt == "auto" else fmt,
                dataset or dataset_name(path),
                role,
                batch_rows,
                workers,
                progress,
            )
        )
    summary.seconds = time.perf_counter() - start
    return summary


def _ingest_one(store, path, fmt, dataset, role, batch_rows, workers, progress) -> FileSummary:
    summary = FileSummary(path=path, dataset=dataset, format=fmt)
    store.forget_file(path)  # a re-ingest (or a resumed one) rewrites this file's provenance
    big_plain_jsonl = (
        workers > 1
        and os.path.getsize(path) >= PARALLEL_MIN_BYTES
        and sniff_container(Path(path)) == "jsonl"
        and not _is_gzip(path)
    )
    batches = (
        _parallel_batches(path, dataset, fmt, workers)
        if big_plain_jsonl
        else parse_batches(iter_records(path), path, dataset, fmt, batch_rows)
    )
    pending: list[ParsedBatch] = []

    def write() -> None:
        # One transaction per ~batch_rows rows: fewer, larger commits are much cheaper in DuckDB.
        inst, src, quar = (pa.concat_tables([getattr(b, part) for b in pending])
                           for part in ("instances", "sources", "quarantine"))
        if len(pending) > 1:  # chunks are de-duplicated on their own, not against each other
            seen: set[str] = set()
            keep = [not (i in seen or seen.add(i)) for i in inst.column("id").to_pylist()]
            inst = inst.filter(pa.array(keep))
        new = store.write_ingest_batch(inst, src, quar)
        summary.read += sum(b.read for b in pending)
        summary.quarantined += sum(b.quarantined for b in pending)
        summary.loaded += new
        summary.duplicates += src.num_rows - new
        pending.clear()
        if progress:
            progress(path, summary.read)

    for batch, detected in batches:
        pending.append(batch)
        summary.format = detected
        if sum(b.read for b in pending) >= batch_rows:
            write()
    if pending:
        write()
    store.register_dataset(dataset, role, summary.format)
    return summary


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"
