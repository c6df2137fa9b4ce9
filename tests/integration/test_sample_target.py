"""`tagtree sample --target FILE` on a store that never saw the file: it is ingested, tagged with
the tree's tagger and grounded on the current tree first. Real DuckDB, the real openai client
against the loopback server (tags and embeddings), the real CLI."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from tagtree.cli import app
from tagtree.errors import TagtreeError
from tagtree.io.store import Store
from tests.conftest import EXAMPLES
from tests.support.openai_server import FakeOpenAIServer

runner = CliRunner()


@pytest.fixture
def tree_store(db_path):
    """The example pool ingested, tagged by the loopback LLM and built into a tree; no target."""
    with FakeOpenAIServer() as srv:
        env = {"COLUMNS": "200", "OPENAI_BASE_URL": srv.base_url, "TAGTREE_LLM_MODEL": "fake",
               "OPENAI_API_KEY": "test-key", "TAGTREE_EMBED_BACKEND": "openai",
               "TAGTREE_EMBED_MODEL": "fake-embed"}
        for args in (["ingest", str(EXAMPLES / "self_instruct_alpaca.jsonl")], ["annotate"],
                     ["tree", "build"]):
            res = runner.invoke(app, [*args, "--db", db_path], env=env)
            assert res.exit_code == 0, res.output
        yield db_path, srv, env


def test_sample_target_ingests_tags_and_grounds_a_new_file(tree_store, tmp_path):
    db, srv, env = tree_store
    new = tmp_path / "new.jsonl"
    shutil.copy(EXAMPLES / "target_coding_math.jsonl", new)
    with Store(db) as store:
        assert store.target_datasets() == []
    srv.reset_log()
    res = runner.invoke(app, ["sample", "--db", db, "--budget", "0.05", "--target", str(new)],
                        env=env)
    assert res.exit_code == 0, res.output
    assert "target: ingested 1 file(s): loaded 20" in res.output
    assert "target: grounded 20 of 20 target instances" in res.output
    assert "KL to target" in res.output and "warning" not in res.output
    assert len(srv.chat_requests()) == 20  # only the new instances were tagged
    with Store(db) as store:
        assert store.target_datasets() == ["new"]
    # a second run finds it ready: nothing ingested, tagged or grounded again
    srv.reset_log()
    res = runner.invoke(app, ["sample", "--db", db, "--budget", "0.05", "--target", str(new)],
                        env=env)
    assert res.exit_code == 0, res.output
    assert "target:" not in res.output and len(srv.chat_requests()) == 0


def test_a_target_needing_another_tagger_than_the_tree_is_a_clear_error(tree_store, tmp_path):
    db, _, env = tree_store
    new = tmp_path / "new.jsonl"
    shutil.copy(EXAMPLES / "target_coding_math.jsonl", new)
    env = {k: v for k, v in env.items() if k not in ("OPENAI_BASE_URL", "TAGTREE_LLM_MODEL")}
    res = runner.invoke(app, ["sample", "--db", db, "--target", str(new)], env=env)
    assert isinstance(res.exception, TagtreeError), res.output
    assert "was built from tagger" in str(res.exception)


def test_a_missing_target_file_is_a_clear_error(tree_store, tmp_path):
    db, _, env = tree_store
    res = runner.invoke(app, ["sample", "--db", db, "--target", str(tmp_path / "x.jsonl")],
                        env=env)
    assert isinstance(res.exception, TagtreeError)
    assert "neither in the store nor a file" in str(res.exception)
