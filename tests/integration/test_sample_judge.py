"""The LLM quality judge through the real openai client against a loopback server: ratings
cached per judge fingerprint, failures stored and retried, quality moved by the judge."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tagtree.io.chat import OpenAIChatModel
from tagtree.io.judge import judge_fingerprint, judge_instances, parse_rating
from tagtree.io.store import Store
from tagtree.stages.score import run_score
from tests.integration.test_sample_store import VERSION, cfg, grounded  # noqa: F401
from tests.support.openai_server import FakeOpenAIServer


def length_judge(body: dict) -> str:
    """Longer responses get higher ratings: a judge whose answers the test can predict."""
    user = body["messages"][-1]["content"]
    response = user.split("Response:\n", 1)[1]
    return json.dumps({"rating": 6 if len(response) > 300 else 2})


def test_judge_rates_caches_and_retries_failures(grounded):  # noqa: F811
    with FakeOpenAIServer(responder=length_judge) as srv, Store(grounded) as store:
        chat = OpenAIChatModel(srv.base_url, "judge-model", max_retries=0, parse_retries=0)
        ids = store.pool_ids()[:30]
        srv.inject("malformed", count=3)
        first = judge_instances(store, chat, ids, concurrency=1)
        assert first["asked"] == 30 and first["rated"] == 27 and first["failed"] == 3
        assert store.scalar("SELECT count(*) FROM judgements WHERE status = 'error'") == 3
        second = judge_instances(store, chat, ids, concurrency=4)
        assert second["asked"] == 3 and second["rated"] == 3 and second["cached"] == 27
        assert judge_instances(store, chat, ids)["asked"] == 0
        ratings = store.judge_ratings(judge_fingerprint(chat), ids)
        instructions, responses = store.instance_texts(ids)
        expected = [6.0 if len(r) > 300 else 2.0 for r in responses]
        # the server sees the prompt-cut response; these responses are short enough to be whole
        assert ratings.tolist() == expected
        tokens = store.scalar("SELECT sum(prompt_tokens) FROM judgements")
        assert tokens == chat.prompt_tokens > 0
        assert "judge-model" in judge_fingerprint(chat)


def test_score_with_the_judge_moves_quality(grounded):  # noqa: F811
    with FakeOpenAIServer(responder=length_judge) as srv:
        c = cfg()
        c["llm"] |= {"base_url": srv.base_url, "model": "judge-model"}
        c["score"] |= {"judge": True, "judge_weight": 1.0, "judge_concurrency": 4}
        out = run_score(grounded, c, VERSION)
    assert out["judged"] == 252 and out["judge"]["rated"] == 252
    with Store(grounded) as store:
        rows = np.array(store.rows("SELECT judge, quality FROM scores"))
    # judge_weight 1: quality is the floor plus the judge's share only
    np.testing.assert_allclose(rows[:, 1], 0.2 + 0.8 * rows[:, 0], atol=1e-6)
    assert set(np.round(rows[:, 0], 3)) == {0.2, 1.0}


@pytest.mark.parametrize("bad", [{}, {"rating": 0}, {"rating": 7}, {"rating": "5"},
                                 {"rating": True}])
def test_parse_rating_rejects_what_is_not_a_rating(bad):
    with pytest.raises(ValueError):
        parse_rating(bad)
