"""Annotate with the single-pass keyphrase tagger on a real DuckDB file: the instance vectors it
computed are stored, and the tree context / baselines take them instead of embedding again."""

from __future__ import annotations

import numpy as np

from tests.unit.test_keyphrase_context import ITEMS


def test_annotate_stores_the_instance_vectors_the_tree_context_reuses(tmp_path):
    import json

    from tagtree.config import load_config
    from tagtree.io.annotator import annotate_store, open_tagger
    from tagtree.io.ingest import ingest_files
    from tagtree.io.store import Store
    from tagtree.stages.sample import ensure_embeddings

    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps({"instruction": it.instruction, "output": it.response})
                            + "\n" for it in ITEMS))
    cfg, _ = load_config(None, {"annotate.phrase_vectors": "context"}, environ={})
    with Store(str(tmp_path / "s.duckdb")) as store:
        ingest_files(store, [str(path)])
        with open_tagger(cfg) as tagger:
            summary = annotate_store(store, tagger)
        assert summary.ok == 3
        ids = [r[0] for r in store.rows("SELECT id FROM instances ORDER BY id")]
        fp = tagger.embedder.fingerprint
        assert store.missing_instance_embeddings(fp, ids) == []

        class Refuses:
            fingerprint = fp

            def embed(self, texts):
                raise AssertionError(f"embedded again: {len(texts)} texts")

        stored = ensure_embeddings(store, cfg, ids, Refuses())
        instructions, responses = store.instance_texts(ids)
        again = tagger.embedder.embed([f"{a}\n{b}".strip()
                                       for a, b in zip(instructions, responses, strict=True)])
        np.testing.assert_allclose(stored, again, atol=1e-6)
