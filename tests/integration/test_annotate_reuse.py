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


def _pool(tmp_path):
    import json

    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps({"instruction": it.instruction, "output": it.response})
                            + "\n" for it in ITEMS))
    return str(path)


def _refuses(fp):
    class Refuses:
        fingerprint = fp

        def embed(self, texts):
            raise AssertionError(f"embedded again: {len(texts)} texts")

    return Refuses()


def test_the_default_tagger_stores_the_vectors_of_the_instances_it_read_whole(tmp_path):
    """Version 1 (the default) embeds each instance's first doc_chars characters: for these
    short rows that is the whole text, so the vectors are stored and never computed again."""
    from tagtree.config import load_config
    from tagtree.io.annotator import annotate_store, open_tagger
    from tagtree.io.ingest import ingest_files
    from tagtree.io.store import Store
    from tagtree.stages.sample import ensure_embeddings

    cfg, _ = load_config(None, {}, environ={})
    with Store(str(tmp_path / "s.duckdb")) as store:
        ingest_files(store, [_pool(tmp_path)])
        with open_tagger(cfg) as tagger:
            assert tagger.mode == "separate"
            assert annotate_store(store, tagger).ok == 3
        ids = [r[0] for r in store.rows("SELECT id FROM instances ORDER BY id")]
        stored = ensure_embeddings(store, cfg, ids, _refuses(tagger.embedder.fingerprint))
        instructions, responses = store.instance_texts(ids)
        again = tagger.embedder.embed([f"{a}\n{b}".strip()
                                       for a, b in zip(instructions, responses, strict=True)])
        np.testing.assert_allclose(stored, again, atol=1e-5)


def test_shard_tasks_hand_their_instance_vectors_to_the_writer(tmp_path):
    """The cluster path (export -> tag a partition anywhere -> load): the vectors a shard's
    tagger computed travel in Parquet beside its tags and land in instance_embeddings."""
    from tagtree.config import load_config
    from tagtree.io.annotate_shards import export_pending, load_results, tag_partition
    from tagtree.io.annotator import open_tagger
    from tagtree.io.ingest import ingest_files
    from tagtree.io.store import Store
    from tagtree.stages.sample import ensure_embeddings

    cfg, _ = load_config(None, {}, environ={})
    with Store(str(tmp_path / "s.duckdb")) as store, open_tagger(cfg) as tagger:
        ingest_files(store, [_pool(tmp_path)])
        store.register_tagger(tagger.fingerprint, tagger.describe())
        parts = export_pending(store, tagger.fingerprint, str(tmp_path / "shards"), 2)
        assert len(parts) == 2
        tagged = [tag_partition(tagger, p) for p in parts]
        assert tagger.take_instance_vectors() is None  # nothing left behind in the worker
        stats = load_results(store, tagger.fingerprint, tagged)
        assert stats.ok == 3
        ids = [r[0] for r in store.rows("SELECT id FROM instances ORDER BY id")]
        stored = ensure_embeddings(store, cfg, ids, _refuses(tagger.embedder.fingerprint))
        assert stored.shape == (3, 384)
        # loading the same partitions again is idempotent
        load_results(store, tagger.fingerprint, tagged)
        assert store.count("instance_embeddings") == 3
