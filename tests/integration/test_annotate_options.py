"""`annotate --critic-rounds N` (0-3), `--limit` in batch mode, and Batch API pricing in the
cost estimate. The real CLI and openai client against the loopback server's chat, files and
batches endpoints; a real DuckDB file."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tagtree.cli import app
from tagtree.io.store import Store
from tests.integration.test_annotate_batch import batch_posts, seed
from tests.support.openai_server import FakeOpenAIServer

runner = CliRunner()


def _env(srv, **extra):
    return {"OPENAI_BASE_URL": srv.base_url, "TAGTREE_LLM_MODEL": "fake-tagger",
            "OPENAI_API_KEY": "test-key", "COLUMNS": "200", "TAGTREE_ANNOTATE_BATCH_POLL_S":
            "0.05", "TAGTREE_ANNOTATE_BATCH_MAX_REQUESTS": "10"} | extra


def rejecting_critic(body):
    """The critic never accepts: every round costs a critique and a revision."""
    name = body["response_format"]["json_schema"]["name"]
    if name == "critique":
        return json.dumps({"ok": False, "critique": "too coarse"})
    return json.dumps({"tags": ["graph coloring", "greedy algorithms"]})


def test_critic_rounds_flag_runs_that_many_rounds(tmp_path, db_path):
    with FakeOpenAIServer(responder=rejecting_critic) as srv:
        with Store(db_path) as store:
            seed(store, tmp_path, 4)
        res = runner.invoke(app, ["annotate", "--db", db_path, "--critic-rounds", "2"],
                            env=_env(srv))
        assert res.exit_code == 0, res.output
        # per instance: tag + 2 x (critique + revise)
        assert len(srv.chat_requests()) == 4 * 5


@pytest.mark.parametrize("bad", ["4", "-1"])
def test_critic_rounds_outside_0_to_3_is_a_usage_error(db_path, bad):
    res = runner.invoke(app, ["annotate", "--db", db_path, "--critic-rounds", bad])
    assert res.exit_code == 2 and "critic-rounds" in res.output


def test_critic_rounds_above_3_in_a_recipe_is_refused(tmp_path, db_path):
    recipe = tmp_path / "tagtree.toml"
    recipe.write_text("[annotate]\ncritic_rounds = 5\n")
    res = runner.invoke(app, ["annotate", "--db", db_path, "--config", str(recipe)])
    assert res.exit_code != 0 and "critic_rounds" in str(res.exception)


def test_limit_is_honoured_in_batch_mode_and_batch_tokens_cost_half(tmp_path, db_path):
    with FakeOpenAIServer(batch_delay=0.05) as srv:
        with Store(db_path) as store:
            seed(store, tmp_path, 25)
        env = _env(srv)
        res = runner.invoke(app, ["annotate", "--db", db_path, "--mode", "batch", "--limit",
                                  "7"], env=env)
        assert res.exit_code == 0, res.output
        assert "annotated 7 instances" in res.output
        assert len(batch_posts(srv)) == 1  # 7 requests, one batch
        with Store(db_path) as store:
            assert store.scalar("SELECT count(*) FROM annotations WHERE status = 'ok'") == 7
            assert store.scalar("SELECT sum(n_requests) FROM batch_jobs") == 7
        # the rest online: prices in, the batch part of the tokens at half price
        res = runner.invoke(app, ["annotate", "--db", db_path], env=env)
        assert res.exit_code == 0, res.output
    with Store(db_path) as store:
        [stats] = store.annotation_stats(2000.0, 8000.0, 0.5)
        b_in, b_out = store.batch_tokens()[0][1:]
        p_in = store.scalar("SELECT sum(prompt_tokens) FROM annotations")
        p_out = store.scalar("SELECT sum(completion_tokens) FROM annotations")
    assert 0 < b_in < p_in and 0 < b_out < p_out
    assert stats["batch_prompt_tokens"] == b_in
    full = (p_in * 2000.0 + p_out * 8000.0) / 1e6
    expected = full - 0.5 * (b_in * 2000.0 + b_out * 8000.0) / 1e6
    assert stats["cost_usd"] == pytest.approx(expected, abs=1e-4) and stats["cost_usd"] < full
    res = runner.invoke(app, ["stats", "--db", db_path], env={
        "COLUMNS": "200", "TAGTREE_LLM_PRICE_IN_PER_MTOK": "2000",
        "TAGTREE_LLM_PRICE_OUT_PER_MTOK": "8000"})
    assert res.exit_code == 0, res.output
    assert expected > 1 and f"{expected:,.2f}" in res.output  # not the undiscounted figure
    assert f"{full:,.2f}" not in res.output
