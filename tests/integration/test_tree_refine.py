"""LLM refinement of tree levels and the structured chat client, against the loopback
OpenAI-compatible server (the real ``openai`` client over HTTP)."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from tagtree.errors import TagtreeError
from tagtree.io.chat import OpenAIChatModel
from tagtree.refine import SCHEMA, LLMRefiner
from tagtree.tree import TreeBuilder
from tests.support.openai_server import FakeOpenAIServer
from tests.unit.test_tree_planted import planted_tags


def topic_namer(body: dict) -> str:
    """Names a cluster after the majority planted topic of its members: clusters of one topic
    get the same name, which refinement must merge."""
    members = body["messages"][-1]["content"]
    topics = Counter(re.findall(r"topic(\d+)", members))
    top = topics.most_common(1)[0][0] if topics else "x"
    return json.dumps({"name": f"Topic {top}", "description": f"Everything about topic {top}."})


def chat(srv, **kw) -> OpenAIChatModel:
    return OpenAIChatModel(srv.base_url, "fake-namer", max_retries=2, timeout_s=10, **kw)


def test_refinement_names_and_merges_duplicates():
    names, x, topic, *_ = planted_tags(n_topics=3, n_sub=3, n_concepts=3, n_tags=6)
    with FakeOpenAIServer(responder=topic_namer) as srv:
        refiner = LLMRefiner(chat(srv))
        b = TreeBuilder(leaf_size=6, branching=3, root_max=2, random_state=0,
                        refiner=refiner).fit(names, x)
        requests = srv.chat_requests()
    tree = b.tree_
    level1 = tree.nodes_at(1)
    # 27 leaves -> 9 subtopic clusters named after 3 topics -> merged to one node per topic
    assert sorted(tree.name[i] for i in level1) == ["Topic 0", "Topic 1", "Topic 2"]
    assert all(tree.description[i].startswith("Everything about") for i in level1)
    assert refiner.merged_ >= 6 and refiner.calls_ == len(requests)
    # every tag sits under the node named after its own topic
    under = [tree.name[tree.path(int(leaf))[1]] for leaf in b.tag_leaf_]
    assert np.mean([u == f"Topic {t}" for u, t in zip(under, topic, strict=True)]) >= 0.95
    fmt = requests[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == SCHEMA
    assert "topic" in requests[0]["messages"][-1]["content"]


class KeywordEmbedder:
    """Tiny fake embedder: one axis per keyword found in the text."""

    fingerprint = "kw@1"
    words = ("fruit", "tool")
    dim = 2

    def embed(self, texts):
        v = np.array([[w in t.lower() for w in self.words] for t in texts], np.float32) + 1e-3
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_reassignment_moves_members_that_fit_another_cluster():
    emb = KeywordEmbedder()
    members = ["apple fruit", "pear fruit", "hammer tool", "saw tool", "plum fruit"]
    vectors = emb.embed(members)
    labels = np.array([0, 0, 1, 1, 1])  # the plum landed with the tools

    def namer(body):
        text = body["messages"][-1]["content"]
        kind = "Fruit" if text.count("fruit") > text.count("tool") else "Tools"
        return json.dumps({"name": kind, "description": f"{kind.lower()} things"})

    with FakeOpenAIServer(responder=namer) as srv:
        refiner = LLMRefiner(chat(srv), emb)
        new, names, descs = refiner.refine_level(1, labels, members, vectors, ["a", "b"],
                                                 ["", ""])
    assert names == ["Fruit", "Tools"] and refiner.moved_ == 1
    assert new.tolist() == [0, 0, 1, 1, 0]


def test_chat_client_recovers_from_errors_and_fences():
    answer = json.dumps({"name": "n", "description": "d"})
    with FakeOpenAIServer(responder=lambda body: answer) as srv:
        model = chat(srv)
        srv.inject("500", count=1)
        assert model.complete_json([{"role": "user", "content": "hi"}], SCHEMA)["name"] == "n"
        srv.inject("fence", count=1)
        assert model.complete_json([{"role": "user", "content": "hi"}], SCHEMA)["name"] == "n"
        srv.inject("empty", count=1)  # unparseable content: asked again
        assert model.complete_json([{"role": "user", "content": "hi"}], SCHEMA)["name"] == "n"
        assert model.prompt_tokens > 0


def test_chat_client_gives_up_with_a_clear_error():
    with FakeOpenAIServer(responder=lambda body: "not json at all") as srv:
        with pytest.raises(TagtreeError, match="no valid JSON"):
            chat(srv, parse_retries=1).complete_json([{"role": "user", "content": "x"}], SCHEMA)
        srv.inject("status", count=5, code=401, message="bad key")
        with pytest.raises(TagtreeError, match="LLM endpoint failed"):
            chat(srv).complete_json([{"role": "user", "content": "x"}], SCHEMA)
