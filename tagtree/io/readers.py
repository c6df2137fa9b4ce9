"""Ingest stage (I/O part): stream records out of JSONL, JSON-array and Parquet files.

Every reader yields ``(line, record, raw)`` where ``record`` is the parsed object or a
``RecordError`` (bad JSON, bad UTF-8) and ``raw`` is the original text kept for quarantine and for
exporting in the user's own format. Files are never loaded whole: memory stays flat on any size.
Gzip input is recognised by its magic bytes, whatever the file is called, and streamed by
``tagtree.io.gunzip``.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson

from tagtree.errors import TagtreeError
from tagtree.formats import CORRUPT_FILE, INVALID_JSON, INVALID_UTF8, RecordError
from tagtree.io.gunzip import GZIP_ERRORS, GZIP_MAGIC, Gunzip, gzip_problem, is_gunzip

_PARQUET_MAGIC = b"PAR1"


def check_path(path: str | Path) -> None:
    """TagtreeError unless ``path`` is a regular file this process can read: a missing file, a
    dangling symlink or a symlink loop, a directory, a FIFO, socket or device (which would block
    or never end), or a forbidden file each get their own one-line message."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise TagtreeError(f"{path} is a symbolic link that points to a missing file "
                               f"({os.readlink(path)})") from None
        raise TagtreeError(f"input file not found: {path}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TagtreeError(f"{path}: symbolic link loop (the link points back at itself); "
                               "pass the real file") from None
        raise TagtreeError(f"cannot read {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise TagtreeError(f"{path} is a directory; pass the files in it")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "a special file")
        raise TagtreeError(f"{path} is not a regular file but {kind}: reading it could block or "
                           "never end; save the data to a file and pass that")
    if not os.access(path, os.R_OK):
        raise TagtreeError(f"cannot read {path}: permission denied")


def _open_binary(path: Path):
    check_path(path)
    try:
        # O_NONBLOCK: a path swapped for a FIFO after the check cannot block the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise TagtreeError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TagtreeError(f"{path} is not a regular file; save the data to a file and pass that")
    fh = os.fdopen(fd, "rb")
    if fh.peek(2)[:2] == GZIP_MAGIC:
        return io.BufferedReader(Gunzip(fh), buffer_size=1 << 16)
    return fh




def _corrupt(path: Path, line: int, exc: BaseException) -> tuple[int, RecordError, str]:
    """The quarantine row that reports a container breaking off after ``line - 1`` lines:
    every row decoded before it is kept."""
    return line, RecordError(CORRUPT_FILE, None, f"{gzip_problem(exc)} after line {line - 1:,} "
                             f"of {path.name}: every line before it was read; re-create or "
                             "re-download the file if rows are missing"), ""


def sniff_container(path: Path) -> str:
    """'parquet', 'json' (one array) or 'jsonl', from the first bytes of the (unzipped) file."""
    with _open_binary(path) as fh:
        try:
            head = fh.peek(4096)[:4096]
        except GZIP_ERRORS as exc:
            if isinstance(exc, EOFError) or not is_gunzip(fh):
                head = b""  # a tiny truncated gzip: its lines are read (and reported) later
            else:
                raise TagtreeError(f"{path}: not a readable gzip file: {exc}") from None
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
    """Lines of a (gzipped) JSONL file; a damaged gzip ends the file with one ``corrupt_file``
    row after every complete line it still gave (none at all: TagtreeError, the file is
    refused)."""
    with _open_binary(path) as fh:
        line_no = 0
        try:
            for line_no, raw in enumerate(fh, start=1):
                parsed = parse_line(raw, first=line_no == 1)
                if parsed is not None:
                    yield line_no, *parsed
        except GZIP_ERRORS as exc:
            if line_no == 0 and not isinstance(exc, EOFError):
                raise TagtreeError(f"{path}: not a readable gzip file: {exc}") from None
            yield _corrupt(path, line_no + 1, exc)


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
        except GZIP_ERRORS as exc:
            yield _corrupt(path, at[0], exc)


_SURROGATE_ESCAPE = ("\\ud", "\\uD")


def _value_end(buf: str, pos: int) -> int:
    """End of the JSON object/array starting at ``buf[pos]`` by bracket counting (strings and
    escapes respected), without building it: how an element nested too deeply to decode is
    stepped over. -1 when it does not end inside ``buf``."""
    depth, in_string, escaped = 0, False, False
    for i in range(pos, len(buf)):
        c = buf[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def _array_elements(text, chunk_chars: int, at: list[int]) -> Iterator[tuple[int, object, str]]:
    """Elements of one top-level array (or of several arrays one after another). An element
    nested too deeply to decode, or holding a lone surrogate, is one ``invalid_json`` row and
    reading goes on after it; anything else after the closing ``]`` is reported, not ignored."""
    decoder = json.JSONDecoder()
    buf = text.read(chunk_chars)
    pos = buf.find("[") + 1
    at[0] = 1 + buf.count("\n", 0, pos)
    eof = False

    def top_up() -> bool:
        """Read more after ``pos``; False at the end of the file."""
        nonlocal buf, pos, eof
        more = text.read(chunk_chars)
        buf, pos = buf[pos:] + more, 0
        eof = not more
        return bool(more)

    def skip(chars: str) -> None:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in chars:
                if buf[pos] == "\n":
                    at[0] += 1
                pos += 1
            if pos < len(buf) or eof or not top_up():
                return

    while True:
        skip(" \t\r\n,")
        if pos >= len(buf):
            return
        if buf[pos] == "]":
            pos += 1
            skip(" \t\r\n")
            if pos >= len(buf):
                return
            if buf[pos] == "[":  # another array follows: read its elements too
                pos += 1
                continue
            error = RecordError(INVALID_JSON, None, "unexpected data after the closing ] of the "
                                "JSON array; the rest of the file was not read")
            yield at[0], error, buf[pos:pos + 200]
            return
        try:
            value, end = decoder.raw_decode(buf, pos)
        except RecursionError:
            end = _value_end(buf, pos)
            while end < 0 and not eof and top_up():
                end = _value_end(buf, pos)
            if end < 0:
                end = len(buf)
            raw = buf[pos:end]
            yield at[0], RecordError(INVALID_JSON, None, "invalid JSON: nested too deeply to "
                                     "read"), raw[:200]
            at[0] += raw.count("\n")
            pos = end
            continue
        except json.JSONDecodeError as exc:
            if not eof and top_up():
                continue
            # A broken array cannot be resynchronised reliably: report and stop.
            error = RecordError(INVALID_JSON, None, f"invalid JSON: {exc.msg}")
            yield at[0], error, buf[pos : pos + 200]
            return
        raw = buf[pos:end]
        if any(e in raw for e in _SURROGATE_ESCAPE):
            try:
                orjson.loads(raw)  # rejects a lone surrogate, accepts a proper pair
            except orjson.JSONDecodeError:
                value = RecordError(INVALID_JSON, None, "invalid JSON: lone surrogate escape in "
                                    "a string (not valid Unicode)")
        yield at[0], value, raw
        at[0] += raw.count("\n")
        pos = end
        if pos > chunk_chars:
            buf, pos = buf[pos:], 0


def iter_parquet(path: Path, batch_rows: int = 10_000) -> Iterator[tuple[int, object, str]]:
    """Rows of a Parquet file as dicts; ``line`` is the 1-based row number. A gzipped Parquet
    file is unzipped to a temporary file first (Parquet needs random access). A row group that
    cannot be decoded ends the file with one ``corrupt_file`` row; the rows before are kept."""
    import pyarrow.parquet as pq

    with contextlib.ExitStack() as stack:
        source = path
        with _open_binary(path) as fh:
            if is_gunzip(fh):
                spool = stack.enter_context(tempfile.TemporaryFile(prefix=".tagtree-parquet-"))
                try:
                    shutil.copyfileobj(fh, spool, 1 << 20)
                except GZIP_ERRORS as exc:
                    raise TagtreeError(f"{path}: not a readable gzip file: "
                                       f"{gzip_problem(exc)}") from None
                spool.seek(0)
                source = spool
        try:
            pf = pq.ParquetFile(source)
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise TagtreeError(f"{path}: not a readable Parquet file: {exc}") from None
        row = 0
        batches = pf.iter_batches(batch_size=batch_rows)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - a corrupt page or row group
                yield row + 1, RecordError(CORRUPT_FILE, None, f"unreadable Parquet data after "
                                           f"row {row:,}: {str(exc)[:160]}; the rows before "
                                           "were read"), ""
                return
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
