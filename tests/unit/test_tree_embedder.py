"""Embedders: the shipped local model gives sensible neighbours; the OpenAI-compatible one talks
to a real loopback HTTP server through the official client."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tagtree.config import Config
from tagtree.io.embedder import LocalEmbedder, OpenAIEmbedder, make_embedder
from tagtree.protocols import Embedder


@pytest.fixture(scope="module")
def local():
    return LocalEmbedder(batch_size=4)


def test_local_shape_norm_and_protocol(local):
    v = local.embed(["python list comprehension", "", "baking bread"])
    assert isinstance(local, Embedder)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_local_neighbours_are_sensible(local):
    a, b, c = local.embed(["python list comprehension", "python generators", "baking bread"])
    assert a @ b > a @ c + 0.2


def test_local_batching_does_not_change_vectors(local):
    texts = ["short", "a much longer text about eigenvalues of symmetric matrices", "sql joins",
             "dynamic programming", "x"]
    one_by_one = np.vstack([local.embed([t]) for t in texts])
    np.testing.assert_allclose(local.embed(texts), one_by_one, atol=2e-3)


def test_local_truncates_long_input(local):
    v = LocalEmbedder(max_tokens=16).embed(["word " * 5000])
    assert v.shape == (1, 384)


class _EmbeddingsHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        # Deterministic fake vectors: one-hot on the text length, returned out of order.
        data = [{"object": "embedding", "index": i,
                 "embedding": [float(len(t) % 4 == j) * 2.0 for j in range(4)]}
                for i, t in enumerate(body["input"])][::-1]
        out = json.dumps({"object": "list", "data": data, "model": body["model"],
                          "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def embeddings_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _EmbeddingsHandler)
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_openai_embedder_batches_orders_and_normalises(embeddings_server):
    url = f"http://127.0.0.1:{embeddings_server.server_address[1]}/v1"
    emb = OpenAIEmbedder(url, "fake-embed", batch_size=2, max_retries=0)
    v = emb.embed(["a", "bb", "ccc"])
    assert [len(r["input"]) for r in embeddings_server.requests] == [2, 1]
    np.testing.assert_allclose(v, np.eye(4, dtype=np.float32)[[1, 2, 3]])
    assert emb.dim == 4 and "fake-embed" in emb.fingerprint


def test_make_embedder_picks_backend(embeddings_server):
    cfg = Config()
    assert isinstance(make_embedder(cfg), LocalEmbedder)
    cfg = Config.model_validate({"embed": {"backend": "openai", "model": "m",
                                           "base_url": "http://127.0.0.1:9/v1"}})
    assert isinstance(make_embedder(cfg), OpenAIEmbedder)


def test_static_embedder_ships_its_weights_and_keeps_meaning():
    """embed.backend = "static": WordLlama's vectors from the wheel (no download), unit length,
    a 5 MB text embedded, and related phrases nearer than unrelated ones."""
    from tagtree.config import load_config
    from tagtree.io.embedder import StaticEmbedder, make_embedder

    cfg, _ = load_config(None, {"embed.backend": "static"}, environ={})
    emb = make_embedder(cfg)
    assert isinstance(emb, StaticEmbedder) and emb.fingerprint.startswith("wordllama")
    v = emb.embed(["binary search tree", "balanced red-black tree", "photosynthesis",
                   "chlorophyll in leaves", "", "word " * 1_000_000])
    assert v.shape == (6, emb.dim) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 3]
    assert sim[2, 3] > sim[2, 0] and sim[2, 3] > sim[2, 1]


def test_static_phrase_embedder_tags_with_its_own_fingerprint():
    """annotate.phrase_embedder = "static": the keyphrase tagger scores phrases with WordLlama
    (so its cached annotations are not the MiniLM tagger's) and still picks phrases of the text."""
    from tagtree.annotation import TagInput
    from tagtree.config import load_config
    from tagtree.io.annotator import keyphrase_tagger

    base, _ = load_config(None, {}, environ={})
    fast, _ = load_config(None, {"annotate.phrase_embedder": "static"}, environ={})
    tagger = keyphrase_tagger(fast)
    assert tagger.embedder.fingerprint.startswith("wordllama")
    assert tagger.fingerprint != keyphrase_tagger(base).fingerprint
    text = ("Implement binary search over a sorted array of integers in Python and explain "
            "its logarithmic running time compared with linear search.")
    (result,) = tagger.tag_many([TagInput("a", text)])
    assert result.status == "ok" and 2 <= len(result.tags) <= 12
    assert all(t in text.lower() for t in result.tags)
    # WordLlama's document vector is not [embed]'s instance vector: nothing handed on to store
    assert tagger.take_instance_vectors() is None
    default = keyphrase_tagger(base)
    default.tag_many([TagInput("a", text)])
    ids, vectors = default.take_instance_vectors()
    assert ids == ["a"] and vectors.shape == (1, default.embedder.dim)
