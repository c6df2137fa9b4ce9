"""LLM refinement never breaks a build and never pays twice for a cluster: garbage answers keep
the offline name (counted), a retry differs from the first try, a dead endpoint is given up on,
and a rebuild asks only about clusters whose members changed. The real ``openai`` client talks to
the loopback fake server; the cache is the real DuckDB store."""

from __future__ import annotations

import json

import numpy as np

from tagtree.config import Config
from tagtree.io.chat import OpenAIChatModel
from tagtree.io.local_llm import free_port
from tagtree.refine import LLMRefiner
from tagtree.stages.tree import StoreNameCache, build_tree_in
from tests.integration.test_tree_store import PlantedEmbedder, add_annotations
from tests.support.openai_server import FakeOpenAIServer
from tests.unit.test_tree_planted import planted_tags


def chat(url: str, **kw) -> OpenAIChatModel:
    return OpenAIChatModel(url, "fake-namer", max_retries=0, timeout_s=10, parse_retries=0, **kw)


def items(body: dict) -> list[str]:
    return [ln[2:] for ln in body["messages"][-1]["content"].splitlines() if ln.startswith("- ")]


def test_garbage_answers_keep_offline_names_and_the_retry_differs():
    members = ["apple", "pear", "bad hammer", "bad saw", "plum", "bad nail"]
    labels = np.array([0, 0, 1, 1, 2, 1])
    vectors = np.eye(6, dtype=np.float32)

    def respond(body):
        got = items(body)
        if any(m.startswith("bad") for m in got):  # this cluster only ever gets garbage
            return "Sure! The name is" if body["temperature"] == 0 else json.dumps(
                {"name": "- - -", "description": "x"})
        return json.dumps({"name": f"Fruit {got[0]}", "description": "Fruit."})

    with FakeOpenAIServer(responder=respond) as srv:
        refiner = LLMRefiner(chat(srv.base_url))
        _, names, descs = refiner.refine_level(1, labels, members, vectors,
                                               ["fruit a", "tools", "fruit b"], ["", "d", ""])
        bodies = srv.chat_requests()
    assert names == ["Fruit apple", "tools", "Fruit plum"] and descs[1] == "d"
    assert (refiner.failed_, refiner.named_) == (1, 2)
    bad = [b for b in bodies if any(m.startswith("bad") for m in items(b))]
    assert len(bad) == 2 and len(bodies) == 4  # one retry, for the failing cluster only
    first, retry = bad
    assert first["temperature"] == 0 and retry["temperature"] > 0 and "seed" in retry
    assert len(items(retry)) < len(items(first))
    schema = first["response_format"]["json_schema"]["schema"]["properties"]
    assert schema["name"]["maxLength"] <= 60 and schema["description"]["maxLength"] <= 200


def test_a_dead_endpoint_is_given_up_on_and_every_node_keeps_a_name():
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    refiner = LLMRefiner(chat(dead))
    labels = np.arange(12) % 6
    _, names, _ = refiner.refine_level(1, labels, [f"m{i}" for i in range(12)],
                                       np.eye(12, dtype=np.float32),
                                       [f"offline {c}" for c in range(6)], [""] * 6)
    assert names == [f"offline {c}" for c in range(6)]
    assert refiner.gave_up_ and refiner.failed_ == 6
    assert refiner.requests_ == 5  # gave up after five endpoint failures in a row


def setup(store, n_sub=3):
    names, x, _, _, concept = planted_tags(n_topics=3, n_sub=n_sub, n_concepts=3, n_tags=4)
    rows = []
    for c in np.unique(concept):
        tags = [n for n, cc in zip(names, concept, strict=True) if cc == c]
        rows += [(f"i{c}-{j}", tags) for j in range(2)]
    add_annotations(store, rows)
    return names, x, rows


def cfg(**tree):
    base = {"leaf_size": 4, "branching": 3, "root_max": 3, "merge_threshold": 0.999,
            "context": "none", "k_search": False, "vocabulary": "none",
            "refine_with_llm": True}
    return Config.model_validate({"tree": base | tree})


def namer(body):
    got = items(body)
    return json.dumps({"name": "Group " + " ".join(got[0].split()[-3:]), "description": "A group."})


def build(store, emb, srv):
    refiner = LLMRefiner(chat(srv.base_url), cache=StoreNameCache(store))
    out = build_tree_in(store, cfg(), emb, refiner=refiner, refiner_fingerprints=["fake"])
    return out, refiner


def test_all_garbage_still_builds_and_the_count_is_reported(store):
    names, x, _ = setup(store)
    with FakeOpenAIServer(responder=lambda body: "no json here") as srv:
        out, refiner = build(store, PlantedEmbedder(names, x), srv)
    tree = store.load_tree(out["tree_version"])
    refined = [i for i in range(len(tree.name)) if tree.level[i] >= 1]
    assert out["refine"]["failed"] == refiner.calls_ > 0 and out["refine"]["named"] == 0
    assert all(tree.name[i] and not tree.name[i].startswith("Group") for i in refined)
    assert store.tree_stats(out["tree_version"])["refine"]["failed"] == out["refine"]["failed"]


def test_a_rebuild_asks_only_about_changed_clusters(store):
    names, x, rows = setup(store)
    emb = PlantedEmbedder(names, x)
    with FakeOpenAIServer(responder=namer) as srv:
        first, r1 = build(store, emb, srv)
        asked_first = [b["messages"][-1]["content"] for b in srv.chat_requests()]
        srv.reset_log()
        # A few new instances on known topics: the tag frequencies (so the tree version and
        # the leaves' member ranking) change, the clustering does not.
        add_annotations(store, rows + [("new-0", rows[0][1]), ("new-1", rows[5][1]),
                                       ("new-2", rows[0][1][:2] + rows[9][1][:2])])
        second, r2 = build(store, emb, srv)
        asked_second = [b["messages"][-1]["content"] for b in srv.chat_requests()]
    assert second["tree_version"] != first["tree_version"] and not second["reused"]
    assert r1.calls_ == r1.requests_ == len(asked_first) > 0 and r1.cached_ == 0
    changed = set(asked_second)
    # Exactly the clusters whose shown members were not asked before went to the model ...
    assert changed.isdisjoint(asked_first)
    assert len(asked_second) == r2.calls_ == r2.named_
    # ... and every other refined cluster came from the cache.
    assert r2.cached_ > 0 and r2.cached_ + r2.calls_ == r2.clusters_
    assert r2.calls_ < r1.calls_


def test_an_answer_that_fits_the_members_worse_than_the_offline_name_is_dropped():
    from tagtree.io.embedder import make_embedder

    emb = make_embedder(Config())
    members = ["apple", "pear", "plum", "hammer", "saw", "nail"]
    labels = np.array([0, 0, 0, 1, 1, 1])

    def respond(body):
        fruit = "apple" in items(body)
        return json.dumps({"name": "Fruit" if fruit else "Geralt of Raven", "description": "."})

    with FakeOpenAIServer(responder=respond) as srv:
        refiner = LLMRefiner(chat(srv.base_url), emb)
        _, names, _ = refiner.refine_level(1, labels, members, emb.embed(members),
                                           ["fruit a", "hand tools"], ["", ""])
    assert names == ["Fruit", "hand tools"] and refiner.rejected_ == 1
