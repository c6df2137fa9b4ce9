"""A generator of hostile input files for the ingest regression suite (issue 16).

``make(kind, dir)`` writes one file (or FIFO, symlink loop, ...) and returns a ``Case``: the path
and what a careful ingest must do with it -- ``outcome`` "quarantine" (the file is read; bad
rows go to quarantine with a reason, every good row is loaded) or "refuse" (the file cannot be
read: exit 2 with a one-line message, nothing half-loaded), the good rows it holds, the
quarantine reasons expected and a phrase the message must contain.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

GOOD = 20  # good rows in each file that holds any


@dataclass
class Case:
    kind: str
    path: Path
    outcome: str  # "quarantine" or "refuse"
    good: int = 0  # rows that must be loaded
    reasons: set[str] = field(default_factory=set)  # quarantine reasons expected
    message: str = ""  # for "refuse": in the error; for "quarantine": in a quarantine message


def rows(n: int = GOOD, start: int = 0) -> list[dict]:
    return [{"instruction": f"Explain topic {i:04d} of hostile input handling",
             "output": f"Answer {i}."} for i in range(start, start + n)]


def jsonl(items: list) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in items)


def json_array(items: list[str]) -> bytes:
    """A JSON array of the given element texts, one per line."""
    return ("[\n" + ",\n".join(items) + "\n]\n").encode()


def _deep(depth: int) -> str:
    return '{"instruction": ' + "[" * depth + "]" * depth + ', "output": "x"}'


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def make(kind: str, directory: Path) -> Case:
    d = Path(directory)
    good = rows()
    good_text = [json.dumps(r) for r in good]
    if kind == "jsonl_deep_line":
        p = d / "deep.jsonl"
        p.write_bytes(jsonl(good[:10]) + _deep(100_000).encode() + b"\n" + jsonl(good[10:]))
        return Case(kind, p, "quarantine", GOOD, {"invalid_json"})
    if kind == "jsonl_lone_surrogate":
        p = d / "surrogate.jsonl"
        p.write_bytes(jsonl(good[:10]) + b'{"instruction": "bad \\ud800 here", "output": "x"}\n'
                      + jsonl(good[10:]))
        return Case(kind, p, "quarantine", GOOD, {"invalid_json"})
    if kind == "array_deep_element":
        p = d / "deep.json"
        p.write_bytes(json_array(good_text[:10] + [_deep(100_000)] + good_text[10:]))
        return Case(kind, p, "quarantine", GOOD, {"invalid_json"}, "nested too deeply")
    if kind == "array_lone_surrogate":
        p = d / "surrogate.json"
        p.write_bytes(json_array(good_text[:10] + ['{"instruction": "bad \\udc80 here", '
                                                   '"output": "x"}'] + good_text[10:]))
        return Case(kind, p, "quarantine", GOOD, {"invalid_json"}, "lone surrogate")
    if kind == "array_trailing_garbage":
        p = d / "trailing.json"
        p.write_bytes(json_array(good_text) + b"this is not json {\n")
        return Case(kind, p, "quarantine", GOOD, {"invalid_json"}, "after the closing ]")
    if kind == "array_two_arrays":
        p = d / "two.json"
        p.write_bytes(json_array(good_text[:10]) + json_array(good_text[10:]))
        return Case(kind, p, "quarantine", GOOD, set())  # arrays one after another: all read
    if kind == "gzip_bad_crc":
        data = bytearray(_gzip(jsonl(good)))
        data[-8] ^= 0xFF  # the CRC32 of the trailer
        p = d / "badcrc.jsonl.gz"
        p.write_bytes(bytes(data))
        return Case(kind, p, "quarantine", GOOD, {"corrupt_file"}, "CRC check failed")
    if kind == "gzip_trailing_garbage":
        p = d / "garbage.jsonl.gz"
        p.write_bytes(_gzip(jsonl(good)) + b"GARBAGE AFTER THE STREAM")
        return Case(kind, p, "quarantine", GOOD, {"corrupt_file"}, "not gzip data")
    if kind == "gzip_truncated":
        big = rows(2000)
        data = _gzip(jsonl(big))
        p = d / "truncated.jsonl.gz"
        p.write_bytes(data[: len(data) * 2 // 3])
        # Rows fully decoded before the cut are kept; the count depends on where zlib stopped.
        kept = _decodable_lines(data[: len(data) * 2 // 3])
        return Case(kind, p, "quarantine", kept, {"corrupt_file"}, "ends early")
    if kind == "gzip_garbage_body":
        p = d / "body.jsonl.gz"
        p.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + os.urandom(64))
        return Case(kind, p, "refuse", 0, set(), "gzip")
    if kind == "gzip_parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(good), buf)
        p = d / "pool.parquet.gz"
        p.write_bytes(_gzip(buf.getvalue()))
        return Case(kind, p, "quarantine", GOOD, set())
    if kind == "fifo":
        p = d / "pipe.jsonl"
        os.mkfifo(p)
        return Case(kind, p, "refuse", 0, set(), "not a regular file")
    if kind == "dev_zero":
        return Case(kind, Path("/dev/zero"), "refuse", 0, set(), "not a regular file")
    if kind == "symlink_loop":
        a, b = d / "loop_a.jsonl", d / "loop_b.jsonl"
        a.symlink_to(b)
        b.symlink_to(a)
        return Case(kind, a, "refuse", 0, set(), "symbolic link loop")
    if kind == "dangling_symlink":
        p = d / "dangling.jsonl"
        p.symlink_to(d / "nowhere.jsonl")
        return Case(kind, p, "refuse", 0, set(), "points to a missing file")
    if kind == "missing":
        return Case(kind, d / "missing.jsonl", "refuse", 0, set(), "input file not found")
    if kind == "directory":
        p = d / "adir"
        p.mkdir()
        return Case(kind, p, "refuse", 0, set(), "is a directory")
    if kind == "empty":
        p = d / "empty.jsonl"
        p.write_bytes(b"")
        return Case(kind, p, "refuse", 0, set(), "nothing loaded")
    if kind == "unreadable":
        p = d / "secret.jsonl"
        p.write_bytes(jsonl(good))
        p.chmod(0)
        return Case(kind, p, "refuse", 0, set(), "permission denied")
    raise ValueError(f"unknown hostile file kind {kind!r}")


def _decodable_lines(data: bytes) -> int:
    """Complete lines a streaming decompressor gets out of a truncated gzip."""
    out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    return out.count(b"\n")


KINDS = ("jsonl_deep_line", "jsonl_lone_surrogate", "array_deep_element", "array_lone_surrogate",
         "array_trailing_garbage", "array_two_arrays", "gzip_bad_crc", "gzip_trailing_garbage",
         "gzip_truncated", "gzip_garbage_body", "gzip_parquet", "fifo", "dev_zero",
         "symlink_loop", "dangling_symlink", "missing", "directory", "empty", "unreadable")
