"""Ingest stage: files -> ``instances`` (+ ``instance_sources``, ``quarantine``, ``datasets``).

Streams each file in batches, validates every record against the file's format, writes good rows
idempotently (content ids) and bad rows to quarantine with file, line, field and reason.
Large uncompressed JSONL files are parsed by worker processes (one per core) in byte-range
chunks while this process writes to DuckDB; everything else is parsed in-process. Records
become batches (validation, quarantine rows, shard parsing) in ``tagtree.io.batches``.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from tagtree.errors import TagtreeError
from tagtree.formats import FORMATS, detect_format
from tagtree.io import hf

# Record validation and batch building live in tagtree.io.batches; imported here by callers.
from tagtree.io.batches import Chunk, ParsedBatch, parse_batches, parse_chunk
from tagtree.io.readers import check_path, iter_records, sniff_container

PARALLEL_MIN_BYTES = 64 << 20  # below this, starting worker processes costs more than it saves
CHUNK_BYTES = 8 << 20  # ~11K typical rows a shard; smaller chunks, smaller worker RSS
GROUP_ROWS = 250_000  # at most this many rows in one INSERT (DuckDB row groups are 122,880 rows)


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


# -- shards: byte ranges of big JSONL files, parsed anywhere, loaded by the one writer ----------
def plan_chunks(path: str, chunk_bytes: int | None = None) -> list[Chunk]:
    """Cut ``path`` into byte ranges of about ``chunk_bytes`` that start at line starts."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    size = os.path.getsize(path)
    chunks, start = [], 0
    with open(path, "rb") as fh:
        while start < size:
            fh.seek(min(start + chunk_bytes, size))
            fh.readline()  # move to the next line start
            end = min(fh.tell(), size)
            chunks.append(Chunk(path, start, end))
            start = end
    return chunks


def _parse_chunk_job(args) -> ParsedBatch:
    """Worker entry point. Hands freed memory back after each chunk: without it a worker's RSS
    crept to ~650 MB (cyclic garbage and Arrow's allocator caching freed blocks), with it it
    stays under ~200 MB."""
    try:
        return parse_chunk(*args)
    finally:
        gc.collect()
        pa.default_memory_pool().release_unused()


def _detect_file_format(path: str) -> str | None:
    for _, record, _ in iter_records(path):
        if isinstance(record, dict) and (fmt := detect_format(record)):
            return fmt
    return None


def _parallel_groups(
    path: str, fmt: str | None, workers: int, out_dir: str, group_rows: int
) -> Iterator[list[ParsedBatch]]:
    """Shards of ``path`` parsed by ``workers`` processes, yielded in file order in groups of
    about ``group_rows`` rows: DuckDB writes one big INSERT several times more cheaply per row
    than many small ones (measured: 22K-row inserts cost 25 us/row, 250K-row ones 10 us/row),
    so the writer waits for a full group rather than writing each shard as it comes."""
    fmt, chunks = plan_file(path, fmt)
    jobs = deque((chunk, fmt, out_dir) for chunk in chunks)
    # spawn, not fork: DuckDB's threads are running in this process. Shards wait on disk, not in
    # memory, so the read-ahead only bounds temporary disk use (~17 MB a shard); it should hold
    # more than one group for the workers to keep parsing while the writer writes.
    max_ahead = 16 * workers
    with mp.get_context("spawn").Pool(workers) as pool:
        ahead: deque = deque()

        def refill() -> None:
            while jobs and len(ahead) < max_ahead:
                ahead.append(pool.apply_async(_parse_chunk_job, (jobs.popleft(),)))

        def in_order() -> Iterator[ParsedBatch]:
            refill()
            while ahead:
                shard = ahead.popleft().get()
                refill()  # before the writer takes over: the workers stay busy meanwhile
                yield shard

        for group in shard_groups(in_order(), group_rows):
            yield group
            for batch in group:
                for part in (batch.instances, batch.sources, batch.quarantine):
                    Path(part).unlink(missing_ok=True)


# -- driver -------------------------------------------------------------------------------------
def check_inputs(paths: Iterable[str], fmt: str = "auto") -> list[str]:
    """The input paths as strings; TagtreeError for a missing file, a directory or an unknown
    format name (the only fatal input errors: bad rows are quarantined)."""
    if fmt != "auto" and fmt not in FORMATS:
        raise TagtreeError(f"unknown format {fmt!r}; choose one of: auto, {', '.join(FORMATS)}")
    paths = [str(p) for p in paths]
    if not paths:
        raise TagtreeError("no input files given")
    for p in paths:
        if Path(p).is_dir() and hf.is_hf_input(p):
            continue  # a Hugging Face dataset directory: read by tagtree.io.hf
        check_path(p)  # missing, a directory, a FIFO or device, a symlink loop, forbidden
    return paths


def ingest_files(
    store,
    paths: Iterable[str],
    *,
    fmt: str = "auto",
    dataset: str | None = None,
    role: str = "pool",
    batch_rows: int = 50_000,
    workers: int | None = None,
    memory_limit: str | None = "1GB",
    progress: Callable[[str, int], None] | None = None,
    split: str | None = None,
) -> IngestSummary:
    """Load every file into ``store``. Raises TagtreeError only for unusable inputs (missing
    file, unknown format name); bad rows are quarantined, never fatal. A Hugging Face dataset
    directory (``save_to_disk`` or a Hub-style Parquet folder) is an input too; ``split``
    names the split to read from one with several (``tagtree.io.hf``)."""
    paths = check_inputs(paths, fmt)
    sweep_stale_shard_dirs(shard_dir_for(store))  # what killed ingests left next to the store
    workers = workers or min(os.cpu_count() or 1, 4)
    summary = IngestSummary()
    start = time.perf_counter()
    with writer_settings(store, memory_limit):
        for path in paths:
            summary.files.append(
                _ingest_one(
                    store,
                    path,
                    None if fmt == "auto" else fmt,
                    dataset or (hf.dataset_name(path, split) if hf.is_hf_input(path)
                                else dataset_name(path)),
                    role,
                    batch_rows,
                    workers,
                    progress,
                    split,
                )
            )
    summary.seconds = time.perf_counter() - start
    return summary


def chunkable(path: str) -> bool:
    """Whether ``path`` is cut into byte-range shards: uncompressed JSONL big enough that
    starting worker processes (or cluster tasks) costs less than it saves."""
    return (
        os.path.getsize(path) >= PARALLEL_MIN_BYTES
        and sniff_container(Path(path)) == "jsonl"
        and not _is_gzip(path)
    )


def plan_file(path: str, fmt: str | None) -> tuple[str | None, list[Chunk]]:
    """The format every shard of ``path`` is parsed as (detected once, here), and its chunks."""
    return fmt or _detect_file_format(path), plan_chunks(path)


def shard_groups(shards: Iterable[ParsedBatch],
                 group_rows: int = GROUP_ROWS) -> Iterator[list[ParsedBatch]]:
    """Consecutive shards in groups of about ``group_rows`` rows (one INSERT each)."""
    group: list[ParsedBatch] = []
    for shard in shards:
        group.append(shard)
        if sum(b.read for b in group) >= group_rows:
            yield group
            group = []
    if group:
        yield group


def write_file(store, path: str, dataset: str, role: str, fmt: str | None, groups,
               progress: Callable[[str, int], None] | None = None) -> FileSummary:
    """Write one file's parsed groups (in file order) as its new content in the store: its old
    provenance and quarantine rows go first, so a re-ingest or a resumed one rewrites them."""
    summary = FileSummary(path=path, dataset=dataset, format=fmt)
    store.forget_file(path)
    line_offset = 0
    for group in groups:
        offsets = []
        for batch in group:
            offsets.append(line_offset)
            line_offset += batch.lines
        # One transaction per group: fewer, larger commits are much cheaper in DuckDB.
        new = store.write_ingest_group(group, offsets, dataset=dataset, source_file=path)
        summary.format = next((b.fmt for b in group if b.fmt), summary.format)
        read = sum(b.read for b in group)
        quarantined = sum(b.quarantined for b in group)
        summary.read += read
        summary.quarantined += quarantined
        summary.loaded += new
        summary.duplicates += read - quarantined - new
        if progress:
            progress(path, summary.read)
    store.register_dataset(dataset, role, summary.format)
    return summary


def shard_dir_for(store) -> str | None:
    """Where shards wait: next to the database, on a disk with room for the data (/tmp may be
    RAM); the system temp directory for an in-memory store."""
    return str(Path(store.path).resolve().parent) if store.path != ":memory:" else None


SHARD_PREFIX = ".tagtree-ingest-"
STALE_UNOWNED_S = 3600  # a shard directory without an owner file is stale after an hour


def sweep_stale_shard_dirs(parent: str | None) -> list[str]:
    """Remove the shard directories that killed ingests left in ``parent`` (an 82 MB file left
    177 MB behind): those whose owner process on this host is gone, or, without an owner file,
    older than an hour. A live ingest's directory is never touched. Returns what was removed."""
    from tagtree.io.atomic import sweep_dead_dirs

    return sweep_dead_dirs(parent or tempfile.gettempdir(), SHARD_PREFIX, STALE_UNOWNED_S)


@contextmanager
def shard_dir(parent: str | None) -> Iterator[str]:
    """A fresh shard directory under ``parent``, marked with its owner, removed afterwards."""
    import shutil
    import socket

    from tagtree.io.atomic import OWNER_FILE

    out_dir = tempfile.mkdtemp(prefix=SHARD_PREFIX, dir=parent)
    try:
        Path(out_dir, OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}")
        yield out_dir
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def _ingest_one(store, path, fmt, dataset, role, batch_rows, workers, progress,
                split=None) -> FileSummary:
    if hf.is_hf_input(path):  # a Hugging Face dataset directory: its own reader
        groups = ([batch] for batch in parse_batches(hf.iter_hf_records(path, split), fmt,
                                                     batch_rows))
        return write_file(store, hf.source_name(path, split), dataset, role, fmt, groups,
                          progress)
    if workers > 1 and chunkable(path):
        with shard_dir(shard_dir_for(store)) as out_dir:
            groups = _parallel_groups(path, fmt, workers, out_dir, max(batch_rows, GROUP_ROWS))
            return write_file(store, path, dataset, role, fmt, groups, progress)
    groups = ([batch] for batch in parse_batches(iter_records(path), fmt, batch_rows))
    return write_file(store, path, dataset, role, fmt, groups, progress)


@contextmanager
def writer_settings(store, memory_limit: str | None):
    """DuckDB settings for the bulk writer, restored afterwards (measured on 2 cores):
    - one thread: the parse workers need the cores, and a parallel INSERT burns more CPU for the
      same wall time (8.1 vs 9.3 us/row);
    - no vacuum at checkpoints: every INSERT ends in a partly filled row group, and merging
      those rewrote ~250K rows per group (3 s for 1M rows) for a few percent of file size;
    - the memory limit bounds the writer's peak RSS.
    Ends with a checkpoint under these settings, so closing the store has nothing left to do."""
    keys = ("threads", "memory_limit", "max_vacuum_tasks")
    saved = store.settings(keys)
    try:
        store.run("SET threads = 1")
        store.run("SET max_vacuum_tasks = 0")
        if memory_limit:
            store.run("SET memory_limit = ?", [memory_limit])
        yield
        store.run("CHECKPOINT")
    finally:
        for key, value in saved.items():
            store.run(f"SET {key} = ?", [value])


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"
