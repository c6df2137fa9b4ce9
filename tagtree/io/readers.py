"""Ingest stage (I/O part): stream records out of JSONL, JSON-array and Parquet files.

Every reader yields ``(line, record, raw)`` where ``record`` is the parsed object or a
``RecordError`` (bad JSON, bad UTF-8) and ``raw`` is the original text kept for quarantine and for
exporting in the user's own format. Files are never loaded whole: memory stays flat on any size.
Gzip input is recognised by its magic bytes, whatever the file is called.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

import orjson

from tagtree.errors import TagtreeError
from tagtree.formats import INVALID_JSON, INVALID_UTF8, RecordError

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"


def _open_binary(path: Path):
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise TagtreeError(f"input file not found: {path}") from None
    except IsADirectoryError:
        raise TagtreeError(f"{path} is a directory; pass the files in it") from None
    except OSError as exc:
        raise TagtreeError(f"cannot read {path}: {exc.strerror}") from None
    if fh.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=fh, mode="rb")
    return fh


def sniff_container(path: Path) -> str:
    """'parquet', 'json' (one array) or 'jsonl', from the first bytes of the (unzipped) file."""
    with _open_binary(path) as fh:
        head = fh.read(4096) if isinstance(fh, gzip.GzipFile) else fh.peek(4096)[:4096]
    if head[:4] == _PARQUET_MAGIC:
        return "parquet"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return "json" if stripped[:1] == b"[" else "jsonl"


def parse_line(raw: bytes, *, first: bool = False) -> tuple[object, str] | None:
    """One JSONL line -> (record or RecordError, its text); None for a blank line. ``first``:
    the file's first line, which may start with a UTF-8 byte-order mark."""
    raw = raw.rstrip(b"\r\n")
    if first and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        error = RecordError(INVALID_UTF8, None, f"not valid UTF-8 (byte {exc.start})")
        return error, raw.decode("utf-8", "replace")
    try:
        return orjson.loads(raw), text
    except orjson.JSONDecodeError as exc:
        return RecordError(INVALID_JSON, None, f"invalid JSON: {exc}"), text


def iter_jsonl(path: Path) -> Iterator[tuple[int, object, str]]:
    with _open_binary(path) as fh:
        for line_no, raw in enumerate(fh, start=1):
            parsed = parse_line(raw, first=line_no == 1)
            if parsed is not None:
                yield line_no, *parsed


def iter_json_array(path: Path, chunk_chars: int = 1 << 20) -> Iterator[tuple[int, object, str]]:
    """Stream the elements of one top-level JSON array; ``line`` is where an element starts.
    Bytes that are not UTF-8 end the file with one ``invalid_utf8`` record at that line."""
    at = [1]  # the line being read, shared with the element reader for the error report
    with _open_binary(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig")
        try:
            yield from _array_elements(text, chunk_chars, at)
        except UnicodeDecodeError as exc:
            yield at[0], RecordError(INVALID_UTF8, None, f"not valid UTF-8: {exc.reason}"), ""


def _array_elements(text, chunk_chars: int, at: list[int]) -> Iterator[tuple[int, object, str]]:
    decoder = json.JSONDecoder()
    buf = text.read(chunk_chars)
    pos = buf.find("[") + 1
    at[0] = 1 + buf.count("\n", 0, pos)
    eof = False
    while True:
        # Skip separators; top up the buffer whenever an element might be cut off.
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                if buf[pos] == "\n":
                    at[0] += 1
                pos += 1
            if pos < len(buf) or eof:
                break
            buf, pos = buf[pos:], 0
            more = text.read(chunk_chars)
            eof = not more
            buf += more
        if pos >= len(buf) or buf[pos] == "]":
            return
        try:
            value, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError as exc:
            if not eof:
                more = text.read(chunk_chars)
                if more:
                    buf, pos = buf[pos:] + more, 0
                else:
                    eof = True
                continue
            # A broken array cannot be resynchronised reliably: report and stop.
            error = RecordError(INVALID_JSON, None, f"invalid JSON: {exc.msg}")
            yield at[0], error, buf[pos : pos + 200]
            return
        raw = buf[pos:end]
        yield at[0], value, raw
        at[0] += raw.count("\n")
        pos = end
        if pos > chunk_chars:
            buf, pos = buf[pos:], 0


def iter_parquet(path: Path, batch_rows: int = 10_000) -> Iterator[tuple[int, object, str]]:
    """Rows of a Parquet file as dicts; ``line`` is the 1-based row number."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise TagtreeError(f"{path}: not a readable Parquet file: {exc}") from None
    row = 0
    for batch in pf.iter_batches(batch_size=batch_rows):
        for record in batch.to_pylist():
            row += 1
            yield row, record, orjson.dumps(record, default=str).decode()


def iter_records(path: str | Path) -> Iterator[tuple[int, object, str]]:
    path = Path(path)
    kind = sniff_container(path)
    if kind == "parquet":
        return iter_parquet(path)
    if kind == "json":
        return iter_json_array(path)
    return iter_jsonl(path)
