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


@pytest.mark.slow
@pytest.mark.model
def test_tree_build_with_llm_starts_the_local_model_and_names_every_node(tmp_path, db_path):
    """`tagtree tree build --llm` with no endpoint configured: the local model names the
    clusters; whatever it answers, every node ends with a name and the counts are printed."""
    import subprocess
    import sys

    rows = [{"instruction": f"{q} (case {i})", "output": "..."} for i in range(4) for q in (
        "Write a Python function that reverses a linked list.",
        "Explain the light reactions of photosynthesis.",
        "Give a recipe for a chocolate cake.", "What is a derivative in calculus?")]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {"PATH": "/usr/bin:/bin", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "HOME": str(tmp_path)}
    run = [sys.executable, "-m", "tagtree"]
    for args in (["ingest", str(path)], ["annotate"], ["tree", "build", "--llm"]):
        out = subprocess.run(run + args + ["--db", db_path], capture_output=True, text=True,
                             env=env, timeout=900)
        assert out.returncode == 0, out.stderr
    assert "LLM names:" in out.stdout
    with Store(db_path) as store:
        tree = store.load_tree()
        assert all(name.strip() for name in tree.name)
        assert store.tree_stats(tree.version)["refine"]["gave_up"] is False


def test_the_local_model_gets_its_caps_and_an_endpoint_does_not():
    """The 135M CPU model is asked for fewer tags, completion and input tokens; a real endpoint
    keeps annotate.max_tags / llm.max_tokens / annotate.max_input_tokens, and the fingerprint
    records whichever applies (so cached local annotations are not mistaken for others)."""
    from tagtree.io.annotator import _llm_tagger

    cfg, _ = load_config(None, {"annotate.tagger": "llm", "annotate.local_max_tags": 5},
                         environ={})
    local = _llm_tagger(cfg, None, local_llm.MODEL_NAME, local=True)
    remote = _llm_tagger(cfg, "http://127.0.0.1:9/v1", "m")
    assert (local.max_tags, local.llm.max_tokens, local.max_input_tokens) == (5, 96, 256)
    assert (remote.max_tags, remote.llm.max_tokens, remote.max_input_tokens) == (12, 256, 1024)
    assert tagger_fingerprint_for(cfg) == local.fingerprint
    cfg6, _ = load_config(None, {"annotate.tagger": "llm"}, environ={})
    assert tagger_fingerprint_for(cfg6) != local.fingerprint
