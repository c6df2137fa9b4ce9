"""`tagtree compare`: fits 80 columns (every metric with --wide), machine-readable output, and
notes saying why methods print the same figures. Real DuckDB, real CLI, loopback embeddings."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from tagtree.cli import app
from tests.integration.test_sample_store import grounded  # noqa: F401
from tests.support.openai_server import FakeOpenAIServer

runner = CliRunner()


@pytest.fixture
def embed_env():
    with FakeOpenAIServer() as srv:  # instance embeddings from loopback: the local model is slow
        yield {"TAGTREE_EMBED_BACKEND": "openai", "TAGTREE_EMBED_BASE_URL": srv.base_url,
               "TAGTREE_EMBED_MODEL": "fake-embed", "OPENAI_API_KEY": "test-key"}


def _compare(db, env, *args, columns=80):
    res = runner.invoke(app, ["compare", "--db", db, "--budget", "0.05", "--seeds", "3", *args],
                        env=env | {"COLUMNS": str(columns)})
    assert res.exit_code == 0, res.output
    return res


def test_compare_fits_80_columns_and_explains_identical_rows(grounded, embed_env):  # noqa: F811
    res = _compare(grounded, embed_env)
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    table = "\n".join(lines)
    for method in ("pool (before)", "tags", "random", "instag", "deita", "kcenter", "quality"):
        assert method in table
    for label in ("picked", "leaf cover", "entropy", "KL tgt", "quality"):
        assert label in table
    assert "entropy_l1" not in table and "seconds" not in table  # those are for --wide
    # no judge in this store: the note says so
    assert "no judge scores" in table
    # --wide in the same 80 columns: every metric, every figure in full (no cell cut to "0.…")
    wide = _compare(grounded, embed_env, "--wide")
    header = next(line for line in wide.stdout.splitlines() if line.split()[:1] == ["method"])
    for metric in ("selected", "leaf_coverage", "entropy_l1", "kl_target", "seconds",
                   "kl_target_aligned", "align_level", "seeds"):
        assert metric in header.split(), header
    assert "…" not in wide.stdout
    doc = json.loads(_compare(grounded, embed_env, "--format", "json").stdout)
    tags = next(r for r in doc["methods"] if r["method"] == "tags")
    row = next(line for line in wide.stdout.splitlines() if line.split()[:1] == ["tags"])
    assert f"{tags['leaf_coverage']:.3f}" in row.split()  # the figures json carries


def test_compare_json_csv_markdown(grounded, embed_env):  # noqa: F811
    doc = json.loads(_compare(grounded, embed_env, "--format", "json").stdout)
    methods = {r["method"]: r for r in doc["methods"]}
    assert set(methods) >= {"pool (before)", "tags", "random", "instag", "deita", "kcenter",
                            "quality"}
    assert methods["tags"]["selected"] == 13 and 0 < methods["tags"]["leaf_coverage"] <= 1
    assert type(methods["tags"]["selected"]) is int  # counts are whole numbers, not 13.0
    # the seeded baselines are a mean over --seeds draws, the others one run
    assert methods["random"]["seeds"] == methods["kmeans"]["seeds"] == 3
    assert "seeds" not in methods["tags"] and "seeds" not in methods["kcenter"]
    assert doc["pool"] == 252 and doc["kl_before"] > 0 and isinstance(doc["notes"], list)
    # identical selections are named in a note, and really are identical
    rows = list(csv.DictReader(io.StringIO(_compare(grounded, embed_env, "--format",
                                                    "csv").stdout)))
    assert {r["method"] for r in rows} == set(methods)
    assert next(r for r in rows if r["method"] == "tags")["selected"] == "13"
    md = _compare(grounded, embed_env, "--format", "markdown").stdout
    assert md.splitlines()[0].startswith("| method | selected | leaf_coverage")
    assert md.splitlines()[1].startswith("|---|")


def test_identical_selections_are_noted(grounded, embed_env):  # noqa: F811
    doc = json.loads(_compare(grounded, embed_env, "--format", "json").stdout)
    from tagtree.io.store import Store

    with Store(grounded) as store:
        sets = store.selection_sets(doc["run_id"])
    same = [(a, b) for a in sets for b in sets if a < b and sets[a] == sets[b]
            and "random" not in (a, b)]
    noted = " ".join(doc["notes"])
    assert same  # on this store deita and quality pick alike (no judge: both rank by richness)
    for a, b in same:  # every identical pair is explained
        assert a in noted and b in noted and "selected the same" in noted
    if ("deita", "quality") in same:  # and why those two: one ranking, a filter that did nothing
        assert "same q(x)" in noted and "deita_threshold" in noted


def test_an_unknown_format_is_a_clear_error(grounded):  # noqa: F811
    res = runner.invoke(app, ["compare", "--db", grounded, "--format", "xml"])
    assert res.exit_code != 0 and "unknown --format" in str(res.exception)
