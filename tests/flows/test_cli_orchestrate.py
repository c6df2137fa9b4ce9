"""`tagtree watch` and `tagtree refresh` from the command line (flows under the test harness)."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from tagtree.cli import app
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_watch_once_then_refresh(tmp_path, monkeypatch, fake_llm):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAGTREE_LLM_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("TAGTREE_LLM_MODEL", "fake-tagger")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    (tmp_path / "landing").mkdir()
    shutil.copy(EXAMPLES / "mt_bench.jsonl", tmp_path / "landing" / "mt.jsonl")
    runner = CliRunner()
    first = runner.invoke(app, ["watch", "landing", "--once"])
    assert first.exit_code == 0, first.output
    assert "1 new landing events" in first.output and "landed: landing/mt.jsonl" in first.output
    again = runner.invoke(app, ["watch", "landing", "--once"])
    assert "0 new landing events" in again.output
    refreshed = runner.invoke(app, ["refresh", "landing", "--output-prefix", "curated"])
    assert refreshed.exit_code == 0, refreshed.output
    assert (tmp_path / "curated" / "refresh" / "summary.json").is_file()


def test_watch_of_a_missing_directory_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["watch", "nowhere", "--once"])
    assert result.exit_code != 0
    assert "no such directory or file: nowhere" in str(result.exception)


def test_serve_help_keeps_its_defaults_readable(monkeypatch):
    """Bracketed defaults ('[landing]') were read as Rich markup and vanished from --help."""
    monkeypatch.setenv("COLUMNS", "200")
    out = " ".join(CliRunner().invoke(app, ["serve", "--help"]).output.split())  # unwrap
    for text in ("(default: the --landing prefix)", "(default: objects.output_prefix)",
                 "(default: ./tagtree.toml if present)", "0 3 * * *", "60"):
        assert text in out, (text, out)
