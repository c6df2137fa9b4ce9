"""Ingest into a real DuckDB file: formats, containers, quarantine, idempotency, schema versions."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tagtree.errors import TagtreeError
from tagtree.io.ingest import ingest_files
from tagtree.io.store import SCHEMA_VERSION, Store

from ..conftest import EXAMPLES

ROWS = {
    "alpaca": [
        {"instruction": f"Task {i}", "input": "", "output": f"Answer {i}"} for i in range(5)
    ],
    "sharegpt": [
        {
            "conversations": [
                {"from": "human", "value": f"Chat {i}"},
                {"from": "gpt", "value": f"Reply {i}"},
            ]
        }
        for i in range(4)
    ],
    "openai": [
        {
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": f"Ask {i}"},
                {"role": "assistant", "content": f"Say {i}"},
            ]
        }
        for i in range(3)
    ],
    "dolly": [
        {"instruction": f"Dolly {i}", "context": "ctx", "response": f"R {i}", "category": "qa"}
        for i in range(3)
    ],
    "prompt_response": [{"prompt": f"P {i}", "response": f"R {i}"} for i in range(2)],
}


def write_jsonl(path, rows, gz=False):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def table(store, sql):
    return store.rows(sql)


@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_each_format_loads_from_jsonl(tmp_path, store, fmt):
    path = write_jsonl(tmp_path / f"{fmt}.jsonl", ROWS[fmt])
    summary = ingest_files(store, [path])
    assert summary.loaded == len(ROWS[fmt])
    assert summary.files[0].format == fmt
    assert store.scalar("SELECT count(*) FROM instances WHERE format = ?", [fmt]) == len(ROWS[fmt])
    # The original record is kept verbatim for export in the user's own format.
    raw = store.scalar("SELECT raw FROM instances ORDER BY source_line LIMIT 1")
    assert json.loads(raw) == ROWS[fmt][0]


def test_json_array_parquet_and_gzip(tmp_path, store):
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps(ROWS["alpaca"], indent=2))
    pq_path = tmp_path / "s.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS["prompt_response"]), pq_path)
    gz = write_jsonl(tmp_path / "o.jsonl.gz", ROWS["openai"], gz=True)
    arr_gz = tmp_path / "d.json.gz"
    arr_gz.write_bytes(gzip.compress(json.dumps(ROWS["dolly"]).encode()))
    summary = ingest_files(store, [str(arr), str(pq_path), gz, str(arr_gz)])
    assert [f.loaded for f in summary.files] == [5, 2, 3, 3]
    assert [f.format for f in summary.files] == ["alpaca", "prompt_response", "openai", "dolly"]
    # JSON-array elements remember the line they start on.
    lines = [
        r[0]
        for r in store.rows(
            "SELECT source_line FROM instances WHERE source_file = ? ORDER BY 1", [str(arr)]
        )
    ]
    assert lines == [2, 7, 12, 17, 22]


def test_forced_format_quarantines_rows_of_another_shape(tmp_path, store):
    path = write_jsonl(tmp_path / "mixed.jsonl", ROWS["alpaca"][:2] + ROWS["prompt_response"][:1])
    summary = ingest_files(store, [path], fmt="alpaca")
    assert (summary.loaded, summary.quarantined) == (2, 1)
    assert store.rows("SELECT source_line, reason, field FROM quarantine") == [
        (3, "missing_field", "instruction")
    ]


def test_every_quarantine_reason_keeps_good_rows(tmp_path, store):
    good = [json.dumps(r).encode() for r in ROWS["alpaca"][:3]]
    lines = [
        good[0],
        b'{"instruction": "broken", ',  # invalid JSON
        good[1],
        b'{"instruction": "caf\xe9", "output": "x"}',  # Latin-1 byte: not UTF-8
        b'["not", "an", "object"]',
        b'{"instruction": "no output here"}',
        b'{"instruction": "   ", "output": "x"}',
        b'{"instruction": ["a"], "output": "x"}',
        b"",  # blank lines are skipped, not quarantined
        good[2],
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    summary = ingest_files(store, [str(path)])
    assert summary.loaded == 3
    assert summary.quarantined == 6
    got = store.rows("SELECT source_line, reason, field FROM quarantine ORDER BY 1")
    assert got == [
        (2, "invalid_json", None),
        (4, "invalid_utf8", None),
        (5, "not_an_object", None),
        (6, "missing_field", "output"),
        (7, "empty_text", "instruction"),
        (8, "wrong_type", "instruction"),
    ]
    assert all(r[0] == str(path) for r in store.rows("SELECT source_file FROM quarantine"))


def test_unknown_format_is_quarantined(tmp_path, store):
    path = write_jsonl(tmp_path / "weird.jsonl", [{"foo": 1}, {"bar": 2}])
    summary = ingest_files(store, [path])
    assert summary.valid == 0
    assert {r[0] for r in store.rows("SELECT reason FROM quarantine")} == {"unknown_format"}


def test_reingest_is_idempotent(tmp_path, store):
    path = write_jsonl(tmp_path / "a.jsonl", ROWS["alpaca"] + [{"instruction": "x"}])
    first = ingest_files(store, [path])
    counts = {t: store.count(t) for t in ("instances", "instance_sources", "quarantine")}
    second = ingest_files(store, [path])
    assert first.loaded == 5 and second.loaded == 0 and second.duplicates == 5
    assert {t: store.count(t) for t in counts} == counts


def test_duplicates_across_files_count_once_and_keep_provenance(tmp_path, store):
    a = write_jsonl(tmp_path / "a.jsonl", ROWS["alpaca"])
    # The same conversations, written as OpenAI chat, in another dataset.
    as_chat = [
        {
            "messages": [
                {"role": "user", "content": r["instruction"]},
                {"role": "assistant", "content": r["output"]},
            ]
        }
        for r in ROWS["alpaca"][:3]
    ]
    b = write_jsonl(tmp_path / "b.jsonl", as_chat + [as_chat[0]])
    summary = ingest_files(store, [a, b])
    assert summary.loaded == 5
    assert summary.files[1].duplicates == 4
    assert store.count("instances") == 5
    assert store.count("instance_sources") == 9
    assert sorted(r[0] for r in store.rows("SELECT name FROM datasets")) == ["a", "b"]


def test_missing_file_and_bad_format_name_are_user_errors(tmp_path, store):
    with pytest.raises(TagtreeError, match="not found"):
        ingest_files(store, [str(tmp_path / "nope.jsonl")])
    with pytest.raises(TagtreeError, match="unknown format"):
        ingest_files(store, [str(EXAMPLES / "mt_bench.jsonl")], fmt="csv")


def test_streaming_batches_flush_across_batch_boundaries(tmp_path, store):
    rows = [{"prompt": f"p{i}", "response": "r"} for i in range(1050)]
    rows += [rows[3], {"prompt": "p1"}]  # a duplicate from an earlier batch; a prompt-only row
    path = write_jsonl(tmp_path / "many.jsonl", rows)
    summary = ingest_files(store, [path], batch_rows=100)
    assert summary.loaded == 1051
    assert summary.duplicates == 1
    assert summary.quarantined == 0  # prompt-only rows are valid (target samples have no response)
    assert store.count("instances") == 1051


def test_newer_schema_version_is_refused(db_path):
    with Store(db_path) as s:
        s.run("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    with pytest.raises(TagtreeError, match="newer tagtree"):
        Store(db_path)
    with pytest.raises(TagtreeError, match="newer tagtree"):
        Store(db_path, read_only=True)


def test_not_a_database_is_a_clear_error(tmp_path):
    bogus = tmp_path / "x.duckdb"
    bogus.write_text("hello")
    with pytest.raises(TagtreeError):
        Store(str(bogus))


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "tagtree", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_cli_summary_and_exit_codes(tmp_path):
    db = str(tmp_path / "cli.duckdb")
    ok = run_cli("ingest", str(EXAMPLES / "self_instruct_alpaca.jsonl"), "--db", db)
    assert ok.returncode == 0, ok.stderr
    assert "loaded 252 / duplicates 0 / quarantined 0" in ok.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"nope": 1}\nnot json\n')
    fail = run_cli("ingest", str(bad), "--db", db)
    assert fail.returncode != 0
    assert "Traceback" not in fail.stderr
    assert f"{bad}:2 [invalid_json]" in fail.stderr
    assert "nothing loaded" in fail.stderr
    stats = run_cli("stats", "--db", db)
    assert stats.returncode == 0
    assert "self_instruct_alpaca" in stats.stdout and "invalid_json" in stats.stdout
    missing = run_cli("stats", "--db", str(tmp_path / "none.duckdb"))
    assert missing.returncode == 2 and "database not found" in missing.stderr


def test_parallel_chunked_parse_matches_sequential(tmp_path, monkeypatch):
    """Big JSONL files are parsed by worker processes in byte-range chunks: same rows, same
    line numbers, same quarantine as the sequential path."""
    import tagtree.io.ingest as ingest_mod

    rows = [json.dumps({"instruction": f"q{i % 700}", "output": "a"}) for i in range(3000)]
    rows[1234] = '{"instruction": "broken'
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(rows) + "\n")
    results = {}
    for workers in (1, 2):
        monkeypatch.setattr(ingest_mod, "PARALLEL_MIN_BYTES", 1)
        monkeypatch.setattr(ingest_mod, "CHUNK_BYTES", 4096)  # many chunks
        with Store(str(tmp_path / f"w{workers}.duckdb")) as s:
            summary = ingest_files(s, [str(path)], workers=workers)
            results[workers] = (
                summary.loaded,
                summary.duplicates,
                summary.quarantined,
                s.rows("SELECT id, source_line FROM instances ORDER BY source_line"),
                s.rows("SELECT source_line, reason FROM quarantine"),
                s.scalar("SELECT count(*) FROM instance_sources"),
            )
    assert results[1] == results[2]
    assert results[2][:3] == (700, 2299, 1)
    assert results[2][4] == [(1235, "invalid_json")]
