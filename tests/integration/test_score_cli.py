"""`tagtree score [--judge]`: recompute scores on the current tree, so turning the judge on
later changes what `sample` selects. Real DuckDB, the real openai client on loopback."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from tagtree.cli import app
from tagtree.io.store import Store
from tests.integration.test_sample_judge import length_judge
from tests.integration.test_sample_store import grounded  # noqa: F401
from tests.support.openai_server import FakeOpenAIServer

runner = CliRunner()
WIDE = {"COLUMNS": "200", "OPENAI_API_KEY": "test-key"}


def _quality(db: str) -> np.ndarray:
    with Store(db) as store:
        return np.array([r[0] for r in store.rows(
            "SELECT quality FROM scores ORDER BY instance_id")])


def _picked(db: str) -> dict:
    with Store(db) as store:
        rows = store.rows("SELECT run_id, instance_id FROM selections")
    out: dict[str, frozenset] = {}
    for run in {r[0] for r in rows}:
        out[run] = frozenset(i for r, i in rows if r == run)
    return out


def test_score_then_score_with_the_judge_changes_quality_and_the_selection(grounded):  # noqa: F811
    res = runner.invoke(app, ["score", "--db", grounded], env=WIDE)
    assert res.exit_code == 0, res.output
    assert "scored 252 instances" in res.output
    before = _quality(grounded)
    res = runner.invoke(app, ["sample", "--db", grounded, "--budget", "10", "--method",
                              "quality"], env=WIDE)
    assert res.exit_code == 0, res.output
    first = _picked(grounded)
    with FakeOpenAIServer(responder=length_judge) as srv:
        res = runner.invoke(app, ["score", "--db", grounded, "--judge", "--judge-weight", "1",
                                  "--llm-base-url", srv.base_url, "--llm-model", "judge"],
                            env=WIDE)
        assert res.exit_code == 0, res.output
        assert "judged 252" in res.output and "asked 252, rated 252" in res.output
        asked = len(srv.chat_requests())
        # ratings are cached per judge: a second run asks nothing
        res = runner.invoke(app, ["score", "--db", grounded, "--judge", "--judge-weight", "1",
                                  "--llm-base-url", srv.base_url, "--llm-model", "judge"],
                            env=WIDE)
        assert "asked 0" in res.output and len(srv.chat_requests()) == asked
    after = _quality(grounded)
    assert not np.allclose(before, after)
    assert set(np.round(after, 3)) == {0.36, 1.0}  # judge only: 0.2 + 0.8 * (rating - 1) / 5
    res = runner.invoke(app, ["sample", "--db", grounded, "--budget", "10", "--method",
                              "quality"], env=WIDE)
    assert res.exit_code == 0, res.output
    second = {k: v for k, v in _picked(grounded).items() if k not in first}
    with Store(grounded) as store:
        long_ids = {r[0] for r in store.rows(
            "SELECT id FROM instances WHERE length(response) > 300")}
    assert len(second) == 1
    (before_ids,), (after_ids,) = first.values(), second.values()
    assert before_ids != after_ids
    assert len(after_ids & long_ids) == min(10, len(long_ids))  # the judge's favourites win

def test_score_without_a_tree_is_a_clear_error(db_path):
    res = runner.invoke(app, ["score", "--db", db_path], env=WIDE)
    assert res.exit_code != 0 and "no knowledge tree" in str(res.exception)
