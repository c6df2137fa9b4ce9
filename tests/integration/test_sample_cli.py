"""`tagtree sample` and `tagtree compare` on a store holding the example data and a tree."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tagtree.cli import app
from tagtree.errors import TagtreeError
from tagtree.io.store import Store
from tests.integration.test_sample_store import grounded  # noqa: F401
from tests.support.openai_server import FakeOpenAIServer

runner = CliRunner()
WIDE = {"COLUMNS": "200"}  # rich wraps tables to the terminal width


def test_sample_scores_selects_and_exports(grounded, tmp_path):  # noqa: F811
    out = tmp_path / "picked.jsonl"
    res = runner.invoke(app, ["sample", "--db", grounded, "--budget", "0.05", "--out", str(out)],
                        env=WIDE)
    assert res.exit_code == 0, res.output
    assert "scored 252 instances" in res.output  # no scores yet: computed first
    assert "KL to target" in res.output and "leaf cover" in res.output
    assert len(out.read_text().splitlines()) == 13
    manifest = json.loads((tmp_path / "picked.manifest.json").read_text())
    assert manifest["selected"] == 13
    with Store(grounded) as store:
        runs = store.rows("SELECT kind, status FROM runs")
    assert runs == [("sample", "completed")]


def test_sample_with_a_baseline_and_a_named_target(grounded):  # noqa: F811
    res = runner.invoke(app, ["sample", "--db", grounded, "--budget", "7", "--method", "quality",
                              "--target", "examples/target_coding_math.jsonl"], env=WIDE)
    assert res.exit_code == 0, res.output
    assert "quality" in res.output


def test_an_unknown_target_is_a_clear_error(grounded, tmp_path):  # noqa: F811
    res = runner.invoke(app, ["sample", "--db", grounded, "--target", str(tmp_path / "x.jsonl")])
    assert isinstance(res.exception, TagtreeError)
    assert "neither in the store nor a file" in str(res.exception)


def test_compare_prints_every_method(grounded):  # noqa: F811
    with FakeOpenAIServer() as srv:  # embeddings from loopback: the local model is slow here
        env = WIDE | {"TAGTREE_EMBED_BACKEND": "openai", "TAGTREE_EMBED_BASE_URL": srv.base_url,
                      "TAGTREE_EMBED_MODEL": "fake-embed"}
        res = runner.invoke(app, ["compare", "--db", grounded, "--budget", "0.1", "--seeds", "3"],
                            env=env)
    assert res.exit_code == 0, res.output
    for method in ("pool (before)", "tags", "random", "instag", "quality"):
        assert method in res.output
    assert "deita" in res.output and "kcenter" in res.output and "skipped" not in res.output
    assert "KL(target || pool)" in res.output
