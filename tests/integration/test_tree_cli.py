"""`tagtree tree build|ground|show|export` on a real DuckDB file with the shipped embedder."""

from __future__ import annotations

import csv
import io
import json

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tagtree.cli import app
from tagtree.errors import TagtreeError
from tagtree.io.store import Store

TOPICS = {
    "python": ["python list comprehension", "python generators", "python decorators",
               "pandas dataframe"],
    "cooking": ["baking bread", "sourdough starter", "pasta sauce recipe", "kneading dough"],
    "fitness": ["strength training", "yoga poses", "stretching routine", "cardio workout"],
}


@pytest.fixture
def annotated(db_path):
    rows = [(f"{k}{i}", tags[i:] + tags[:1]) for k, tags in TOPICS.items() for i in range(3)]
    with Store(db_path) as s:
        s.insert_arrow("annotations", pa.table({
            "instance_id": [r[0] for r in rows], "tagger": ["kw@1"] * len(rows),
            "tags": [r[1] for r in rows], "status": ["ok"] * len(rows)}))
    return db_path


def run(*args):
    result = CliRunner().invoke(app, list(args), catch_exceptions=True)
    return result


def test_build_show_export(annotated, monkeypatch):
    monkeypatch.setenv("TAGTREE_TREE_LEAF_SIZE", "2")
    monkeypatch.setenv("TAGTREE_TREE_ROOT_MAX", "3")
    monkeypatch.setenv("TAGTREE_TREE_K_SEARCH", "false")  # plumbing, not the count search
    r = run("tree", "build", "--db", annotated)
    assert r.exit_code == 0, r.output
    assert "12 tags" in r.output and "grounded 9 instances" in r.output
    r2 = run("tree", "build", "--db", annotated)
    assert "reused" in r2.output

    shown = run("tree", "show", "--db", annotated, "--depth", "1")
    assert shown.exit_code == 0, shown.output
    assert "instances" in shown.output and "L1" in shown.output

    exported = json.loads(run("tree", "export", "--db", annotated, "--format", "json").output)
    roots = exported["roots"]
    assert 1 <= len(roots) <= 3 and sum(r["tags"] for r in roots) == 12
    rows = list(csv.DictReader(io.StringIO(run("tree", "export", "--db", annotated,
                                               "--format", "csv").output)))
    with Store(annotated, read_only=True) as s:
        tree = s.load_tree()
    assert len(rows) == tree.n_nodes and rows[0]["level"] == "0"

    node = run("tree", "show", "--db", annotated, "--node", str(tree.n_nodes - 1))
    assert node.exit_code == 0 and tree.name[-1].split(" / ")[0] in node.output
    bad = run("tree", "show", "--db", annotated, "--node", "9999")
    assert isinstance(bad.exception, TagtreeError)
    assert run("tree", "ground", "--db", annotated).exit_code == 0


def test_show_without_a_tree_is_a_clear_error(db_path):
    with Store(db_path):
        pass
    r = run("tree", "show", "--db", db_path)
    assert isinstance(r.exception, TagtreeError) and "tagtree tree build" in str(r.exception)
