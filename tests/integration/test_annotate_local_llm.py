"""The offline LLM default: xllamacpp's server with the SmolLM2 GGUF shipped in a wheel."""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from tagtree.config import load_config
from tagtree.errors import TagtreeError
from tagtree.io import local_llm
from tagtree.io.annotator import annotate_store, open_tagger, tagger_fingerprint_for
from tagtree.io.ingest import ingest_files
from tagtree.io.store import Store


def test_missing_model_wheel_names_make_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(local_llm.importlib.metadata, "distribution", missing)
    with pytest.raises(TagtreeError, match="make install"):
        local_llm.model_path()


def test_offline_llm_fingerprint_needs_no_server():
    cfg, _ = load_config(None, {"annotate.tagger": "llm"}, environ={})
    assert tagger_fingerprint_for(cfg).startswith(f"llm:{local_llm.MODEL_NAME}:")


@pytest.mark.slow
@pytest.mark.model
def test_local_model_tags_instances_end_to_end(tmp_path, db_path):
    path = tmp_path / "two.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"instruction": "Write a Python function that reverses a linked list.", "output": "..."},
        {"instruction": "Explain the light reactions of photosynthesis.", "output": "..."}]))
    cfg, _ = load_config(None, {"annotate.tagger": "llm"}, environ={})
    with Store(db_path) as store:
        ingest_files(store, [str(path)])
        with open_tagger(cfg) as tagger:
            assert tagger.llm.base_url.startswith("http://127.0.0.1:")
            summary = annotate_store(store, tagger)
        rows = store.annotations_of(tagger.fingerprint, status=None)
    assert summary.requested == 2 and len(rows) == 2
    for _, tags, status, error in rows:  # a 135M model: tags are weak, but they are tags
        assert status == "ok", error
        assert 2 <= len(tags) <= 12 and all(isinstance(t, str) and t for t in tags)
