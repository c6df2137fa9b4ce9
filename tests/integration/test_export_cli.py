"""`tagtree export`: a stored selection written again in another format, without sampling."""

from __future__ import annotations

import orjson
from typer.testing import CliRunner

from tagtree.cli import app
from tagtree.errors import TagtreeError
from tagtree.io.store import Store


def test_cli_export_writes_the_stored_selection(report_db, tmp_path):
    out = tmp_path / "sel.jsonl"
    res = CliRunner().invoke(app, ["export", "--db", report_db, "--run", "run-1", "--method",
                                   "tags", "--format", "jsonl", "--out", str(out)])
    assert res.exit_code == 0, res.output
    with Store(report_db, read_only=True) as store:
        selected = store.scalar("SELECT count(*) FROM selections WHERE run_id = 'run-1' AND "
                                "method = 'tags'")
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]
    assert len(rows) == selected > 0 and f"exported {selected:,} instances" in res.output
    assert (tmp_path / "sel.manifest.json").exists()


def test_cli_export_without_a_selection_is_a_user_error(tmp_path):
    res = CliRunner().invoke(app, ["export", "--db", str(tmp_path / "empty.duckdb")])
    assert isinstance(res.exception, TagtreeError)
