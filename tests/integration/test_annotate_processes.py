"""The keyphrase tagger in worker processes (``annotate.processes``) on a real DuckDB file and the
real MiniLM: the same tags and instance vectors as tagging in the calling process."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagtree.io.annotate_processes import AUTO_MIN_ROWS, planned_processes

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "self_instruct_alpaca.jsonl"


def _annotate(tmp_path: Path, name: str, rows: list[str], processes: int):
    from tagtree.config import load_config
    from tagtree.io.ingest import ingest_files
    from tagtree.io.store import Store
    from tagtree.stages.annotate import run_annotate

    pool = tmp_path / f"{name}.jsonl"
    pool.write_text("".join(rows))
    db = str(tmp_path / f"{name}.duckdb")
    cfg, _ = load_config(None, {"annotate.processes": processes}, environ={})
    with Store(db) as store:
        ingest_files(store, [str(pool)])
    seen: list[tuple[int, int]] = []
    summary = run_annotate(db, cfg, progress=lambda done, total: seen.append((done, total)))
    with Store(db) as store:
        tags = dict(store.rows("SELECT instance_id, tags FROM annotations "
                               "WHERE tagger = ? AND status = 'ok'", [summary["tagger"]]))
        embedder = store.rows("SELECT DISTINCT embedder FROM instance_embeddings")
        assert len(embedder) == 1
        # the rows the tagger read whole (the default document: the first 1,000 characters)
        ids = [r[0] for r in store.rows("SELECT instance_id FROM instance_embeddings "
                                        "ORDER BY instance_id")]
        vectors = store.instance_vectors(embedder[0][0], ids)
    return summary, tags, ids, vectors, seen


def test_worker_processes_tag_and_embed_exactly_as_one_process(tmp_path):
    rows = EXAMPLE.read_text().splitlines(keepends=True)[:90]
    one, tags_one, ids_one, vec_one, _ = _annotate(tmp_path, "one", rows, processes=1)
    two, tags_two, ids_two, vec_two, seen = _annotate(tmp_path, "two", rows, processes=2)
    assert two["tagger"] == one["tagger"]
    assert (two["ok"], two["failed"]) == (one["ok"], one["failed"]) and one["ok"] >= 85
    assert tags_two == tags_one
    assert ids_two == ids_one and len(ids_one) >= 60
    np.testing.assert_allclose(vec_two, vec_one, atol=1e-5)
    assert seen and seen[-1] == (two["requested"], two["requested"])  # progress reached the end


def test_a_rerun_on_worker_processes_tags_only_what_is_missing(tmp_path):
    rows = EXAMPLE.read_text().splitlines(keepends=True)[:40]
    first, *_ = _annotate(tmp_path, "again", rows[:20], processes=2)
    extra = tmp_path / "more.jsonl"
    extra.write_text("".join(rows[20:]))
    from tagtree.config import load_config
    from tagtree.io.ingest import ingest_files
    from tagtree.io.store import Store
    from tagtree.stages.annotate import run_annotate

    db = str(tmp_path / "again.duckdb")
    with Store(db) as store:
        ingest_files(store, [str(extra)])
    cfg, _ = load_config(None, {"annotate.processes": 2}, environ={})
    second = run_annotate(db, cfg)
    assert second["cached"] == first["ok"]
    assert second["requested"] == 20 + first["failed"]


def test_auto_splits_only_the_cores_one_session_would_leave_idle():
    # One session takes at most 4 threads: on 2 cores (measured: no gain) it stays in process.
    assert planned_processes(0, 10**6, cores=2) == 1
    assert planned_processes(0, 10**6, cores=7) == 1
    assert planned_processes(0, AUTO_MIN_ROWS, cores=8) == 2
    assert planned_processes(0, AUTO_MIN_ROWS - 1, cores=8) == 1  # the start would cost more
    assert planned_processes(0, 10**6, cores=128) == 8
    assert planned_processes(3, 5, cores=2) == 3  # set: as set
    assert planned_processes(1, 10**6, cores=64) == 1  # 1: the calling process
