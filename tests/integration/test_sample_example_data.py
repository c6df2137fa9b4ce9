"""The example-data check: the bundled self-instruct pool through the real stages (ingest ->
keyphrase annotate -> tree -> ground -> score -> sample). The 5% TAGS selection must beat random
selection (mean of 20 seeds) on leaf coverage and on the normalised entropy of every level.

Embeddings come from the loopback OpenAI-compatible server (hash-seeded vectors) so the test runs
in seconds on a shared machine; set TAGTREE_TEST_REAL_EMBEDDER=1 to use the shipped MiniLM model.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tagtree.config import Config
from tagtree.io.annotator import annotate_store, open_tagger
from tagtree.io.embedder import make_embedder
from tagtree.io.ingest import ingest_files
from tagtree.io.store import Store
from tagtree.stages.ground import ground_in
from tagtree.stages.sample import run_sample
from tagtree.stages.score import run_score
from tagtree.stages.tree import build_tree_in
from tests.conftest import EXAMPLES
from tests.support.openai_server import FakeOpenAIServer


@pytest.mark.slow  # ~3-6 s on a shared machine; minutes with the real embedder
def test_tags_beats_random_on_coverage_and_entropy_of_the_example_pool(db_path):
    real = os.environ.get("TAGTREE_TEST_REAL_EMBEDDER") == "1"
    with FakeOpenAIServer() as srv:
        cfg = Config()
        if not real:
            cfg.embed.backend = "openai"
            cfg.embed.base_url = srv.base_url
            cfg.embed.model = "fake-embed"
        embedder = make_embedder(cfg)
        with Store(db_path) as store:
            ingest_files(store, [str(EXAMPLES / "self_instruct_alpaca.jsonl")])
            with open_tagger(cfg, embedder=embedder) as tagger:
                annotate_store(store, tagger)
            tree = build_tree_in(store, cfg, embedder)
            ground_in(store, cfg, embedder, tree["tree_version"])
    c = cfg.model_dump()
    run_score(db_path, c, tree["tree_version"])
    c["sample"]["budget"] = "0.05"
    out = run_sample(db_path, c, tree["tree_version"], "example", methods=["tags", "random"],
                     random_seeds=20)
    tags, rand = out["methods"]["tags"], out["methods"]["random"]
    assert tags["selected"] == rand["selected"] == 13 and rand["seeds"] == 20
    print({k: (tags[k], rand[k]) for k in tags if k in rand})
    assert tags["leaf_coverage"] > rand["leaf_coverage"]
    levels = [k for k in tags if k.startswith("entropy_l")]
    assert levels and all(tags[k] > rand[k] for k in levels), (tags, rand)
    print({k: (round(tags[k], 4), round(rand[k], 4)) for k in ["leaf_coverage"] + levels},
          "tree:", tree.get("levels"), "leaves:", tree.get("n_leaves"))
    assert np.isfinite(tags["mean_quality"])
