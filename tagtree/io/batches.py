"""Records -> parsed batches: every record validated against the file's format, good rows as
Arrow columns (deduplicated inside the batch by content id), provenance rows, and bad rows as
quarantine rows with line, field and reason; and the byte-range shard parser the ingest workers
(or shard tasks on a cluster) run. Split out of ``tagtree.io.ingest``, which re-exports these
names."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tagtree.formats import UNKNOWN_FORMAT, RecordError, detect_format, normalize_record
from tagtree.io.readers import parse_line

_RAW_QUARANTINE_CHARS = 2000  # enough to see what went wrong, bounded for huge bad lines


@dataclass
class ParsedBatch:
    """One batch as Arrow tables (or, from a shard, Parquet files) ready for the store.

    Columns that are the same for the whole file (dataset, format, source file) are not in the
    tables: the store adds them while loading, which keeps worker output and IPC small."""

    instances: pa.Table | str
    sources: pa.Table | str
    quarantine: pa.Table | str
    read: int
    quarantined: int
    fmt: str | None = None
    lines: int = 0  # lines the batch spans (a shard's line numbers count from its own start)


_QUARANTINE_TYPES = (
    ("source_line", pa.int64()),
    ("field", pa.string()),
    ("reason", pa.string()),
    ("message", pa.string()),
    ("raw", pa.string()),
)


class _Builder:
    """Column buffers for one batch; Arrow tables are built from them in one go."""

    def __init__(self, fmt: str | None):
        self.fmt = fmt
        self.ids, self.instr, self.resp, self.system, self.turns, self.raw, self.line = (
            [], [], [], [], [], [], [],
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

    def build(self, lines: int = 0) -> ParsedBatch:
        instances = pa.table(
            {
                "id": pa.array(self.ids, pa.string()),
                "instruction": pa.array(self.instr, pa.string()),
                "response": pa.array(self.resp, pa.string()),
                "system": pa.array(self.system, pa.string()),
                "n_turns": pa.array(self.turns, pa.int32()),
                "raw": pa.array(self.raw, pa.string()),
                "source_line": pa.array(self.line, pa.int64()),
            }
        )
        sources = pa.table(
            {
                "instance_id": pa.array(self.src_ids, pa.string()),
                "source_line": pa.array(self.src_lines, pa.int64()),
            }
        )
        columns = (self.q_line, self.q_field, self.q_reason, self.q_msg, self.q_raw)
        pairs = zip(_QUARANTINE_TYPES, columns, strict=True)
        quarantine = pa.table({name: pa.array(col, typ) for (name, typ), col in pairs})
        return ParsedBatch(
            instances, sources, quarantine, self.read, len(self.q_line), self.fmt, lines
        )


def parse_batches(records: Iterable, fmt: str | None, batch_rows: int) -> Iterator[ParsedBatch]:
    """Group ``(line, record, raw)`` triples into parsed batches."""
    builder = _Builder(fmt)
    for line, record, raw in records:
        builder.add(line, record, raw)
        if builder.read >= batch_rows:
            yield builder.build()
            builder = _Builder(builder.fmt)
    if builder.read:
        yield builder.build()


@dataclass(frozen=True)
class Chunk:
    """A byte range of a JSONL file that starts and ends at line starts."""

    path: str
    start: int
    end: int


def parse_chunk(chunk: Chunk, fmt: str | None, out_dir: str) -> ParsedBatch:
    """Parse one byte range and write it as Parquet files under ``out_dir``; returns the batch
    with file paths in place of tables. Line numbers count from 1 inside the chunk: the writer
    shifts them by the lines of the chunks before it. Runs in worker processes (or shard tasks
    on a cluster), so it takes and returns only small, picklable values."""
    with open(chunk.path, "rb") as fh:
        fh.seek(chunk.start)
        data = fh.read(chunk.end - chunk.start)
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    del data
    builder = _Builder(fmt)
    for i, raw in enumerate(lines, start=1):
        parsed = parse_line(raw, first=chunk.start == 0 and i == 1)
        if parsed is not None:
            builder.add(i, *parsed)
    n_lines = len(lines)
    del lines
    batch = builder.build(n_lines)
    # Two inputs may share a file name: the path's hash keeps their shards apart.
    tag = hashlib.blake2b(str(Path(chunk.path).resolve()).encode(), digest_size=4).hexdigest()
    stem = Path(out_dir) / f"{Path(chunk.path).name}.{tag}.{chunk.start}"
    files = {}
    for part in ("instances", "sources", "quarantine"):
        files[part] = f"{stem}.{part}.parquet"
        # Uncompressed: the files live for seconds in the page cache; compressing costs more
        # CPU than the bytes it saves.
        pq.write_table(getattr(batch, part), files[part], compression="none")
    return ParsedBatch(**files, read=batch.read, quarantined=batch.quarantined,
                       fmt=batch.fmt, lines=n_lines)
