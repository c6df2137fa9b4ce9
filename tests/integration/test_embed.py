"""The embed stage on a real store with an embedder handed in (tagtree.Resources): it embeds
each folded tag once per embedder and a second call computes nothing."""

from __future__ import annotations

import hashlib

import numpy as np

import tagtree
from tagtree.io.store import Store
from tests.conftest import EXAMPLES


class CountingEmbedder:
    """Hash vectors (no model) that remember how many texts they were asked for."""

    fingerprint = "count-32@1"
    dim = 32

    def __init__(self):
        self.texts = 0

    def embed(self, texts):
        self.texts += len(texts)
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest(), np.uint8) for t in texts]
        v = np.asarray(rows, np.float32).reshape(len(texts), self.dim) - 127.5
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_embed_computes_each_missing_tag_vector_once(tmp_path):
    db, config = str(tmp_path / "e.duckdb"), tagtree.Config()
    fake = CountingEmbedder()
    resources = tagtree.Resources(embedder=fake)
    tagtree.ingest(db, [EXAMPLES / "mt_bench.jsonl"], config=config)
    tags = tagtree.annotate(db, config=config, resources=resources)  # keyphrase, on the fake
    assert tags.ok > 70 and fake.fingerprint in tags.tagger
    before = fake.texts
    first = tagtree.embed(db, config=config, resources=resources, tagger=tags.tagger)
    assert isinstance(first, tagtree.EmbedResult) and first.embedder == fake.fingerprint
    assert first.embedded_new == first.tags == fake.texts - before > 50
    again = tagtree.embed(db, config=config, resources=resources)
    assert again.embedded_new == 0 and fake.texts - before == first.tags
    with Store(db, read_only=True) as store:
        assert store.count("tag_embeddings") == first.tags


def test_cli_embed_embeds_what_is_missing_then_nothing(tmp_path):
    from typer.testing import CliRunner

    from tagtree.cli import app
    from tagtree.errors import TagtreeError

    db = str(tmp_path / "cli.duckdb")
    res = CliRunner().invoke(app, ["embed", "--db", db])
    assert isinstance(res.exception, TagtreeError)  # nothing annotated yet: a user error
    tagtree.ingest(db, [EXAMPLES / "mt_bench.jsonl"])
    tagtree.annotate(db)  # the offline keyphrase tagger on the shipped embedder
    res = CliRunner().invoke(app, ["embed", "--db", db])
    assert res.exit_code == 0, res.output
    assert "embedded now" in res.output and " 0 embedded now" not in res.output
    res = CliRunner().invoke(app, ["embed", "--db", db])
    assert res.exit_code == 0 and " 0 embedded now" in res.output, res.output
