"""Score -> sample -> export against a real DuckDB file holding the bundled example data, on a
knowledge tree written by the test (apps of self-instruct as leaves), so every figure is known."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from tagtree.config import Config
from tagtree.errors import TagtreeError
from tagtree.hierarchy import KnowledgeTree
from tagtree.io.ingest import ingest_files
from tagtree.io.store import Store
from tagtree.scoring import node_weights
from tagtree.stages.export import run_export
from tagtree.stages.sample import run_sample
from tasks.export import export
from tasks.sample import sample
from tasks.score import score, store_fingerprint
from tests.conftest import EXAMPLES
from tests.support.openai_server import FakeOpenAIServer

POOL = EXAMPLES / "self_instruct_alpaca.jsonl"
TARGET = EXAMPLES / "target_coding_math.jsonl"
CODING = {"Leetcode", "StackOverflow", "GeeksforGeeks", "Github", "w3schools"}
MATH = {"Wolfram alpha", "(Wolfram alpha)?"}
VERSION = "tv-test"


def write_app_tree(store: Store) -> KnowledgeTree:
    """Leaves = apps; branch 0 = coding apps, branch 1 = math apps, 6 more branches; a root."""
    rows = store.rows("SELECT id, raw, dataset FROM instances ORDER BY id")
    pool = [(i, orjson.loads(r)["motivation_app"]) for i, r, d in rows if d != "target_coding_math"]
    target = [(i, orjson.loads(r)["category"]) for i, r, d in rows if d == "target_coding_math"]
    apps = sorted({a for _, a in pool})
    branch = [0 if a in CODING else 1 if a in MATH else 2 + k % 6 for k, a in enumerate(apps)]
    n = len(apps)
    parent = np.array([n + b for b in branch] + [n + 8] * 8 + [-1])
    level = np.array([0] * n + [1] * 8 + [2])
    tree = KnowledgeTree(parent, level, apps + [f"b{b}" for b in range(8)] + ["root"],
                         size=np.ones(n + 9, dtype=np.int64), version=VERSION)
    store.write_tree(VERSION, tree, np.zeros((n + 9, 4), np.float32), [], np.zeros(0, int),
                     np.zeros(0), {}, {})
    leaf = {a: i for i, a in enumerate(apps)}
    coding_leaves = [leaf[a] for a in sorted(CODING)]
    ids, cols = [], []
    for iid, app in pool:
        ids.append(iid)
        cols.append(leaf[app])
    for k, (iid, cat) in enumerate(target):
        ids.append(iid)
        cols.append(coding_leaves[k % len(coding_leaves)] if cat == "coding"
                    else leaf["Wolfram alpha"])
    g = sp.csr_matrix((np.ones(len(ids)), (np.arange(len(ids)), cols)), shape=(len(ids), n))
    store.write_instance_nodes(VERSION, ids, node_weights(tree, g))
    return tree


@pytest.fixture
def grounded(db_path):
    with Store(db_path) as store:
        ingest_files(store, [str(POOL)])
        ingest_files(store, [str(TARGET)], role="target")
        write_app_tree(store)
    return db_path


def cfg(**sample) -> dict:
    c = Config().model_dump()
    c["sample"] |= sample
    return c


def test_a_small_selection_is_judged_beside_the_pool_on_the_level_it_is_aligned_on(grounded):
    score.fn(grounded, cfg(), VERSION)
    out = sample.fn(grounded, cfg(budget="0.01"), VERSION, "small")
    # 3 picks cannot reach the target's leaves: they are aligned on the branches above them,
    # and the pool's KL in the summary, the line and the compare table is taken there too.
    level = out["align_level"]
    assert out["selected"] == 3 and level == 1
    assert out["pool_metrics"]["align_level"] == out["methods"]["tags"]["align_level"] == level
    assert out["kl_before_aligned"] == out["pool_metrics"]["kl_target_aligned"]
    assert out["kl_after_aligned"] < out["kl_before_aligned"]
    assert (f"KL to target {out['kl_before_aligned']:.3f} -> {out['kl_after_aligned']:.3f} "
            f"on level 1 (8 nodes") in out["line"]
    assert f"leaves {out['kl_before']:.3f} -> {out['kl_after']:.3f}" in out["line"]
    # the report computes the pool's figure itself, on the same level: the same numbers
    from tagtree.io.store.report import gather_report_data

    with Store(grounded, read_only=True) as store:
        rows = {r["method"]: r for r in gather_report_data(store, run_id="small")["kl"]}
    assert rows["pool"]["level"] == rows["tags"]["level"] == 1
    assert rows["pool"]["kl_aligned"] == pytest.approx(out["kl_before_aligned"], abs=1e-4)
    assert rows["tags"]["kl_aligned"] == pytest.approx(out["kl_after_aligned"], abs=1e-4)
    assert rows["pool"]["kl"] == pytest.approx(out["kl_before"], abs=1e-4)


def test_score_writes_one_row_per_pool_instance_with_a_visible_distribution(grounded):
    out = score.fn(grounded, cfg(), VERSION)
    assert out["instances"] == 252 and out["grounded"] == 252 and out["table"] == "scores"
    assert not out["quality"]["collapsed"] and 0.2 <= out["quality"]["mean"] <= 1
    with Store(grounded) as store:
        assert store.count("scores") == 252
        assert store.scalar("SELECT min(quality) >= 0.2 AND max(quality) <= 1 FROM scores")
    assert score.fn(grounded, cfg(), VERSION)["quality_hash"] == out["quality_hash"]


def test_sample_aligns_to_the_target_and_records_metrics(grounded):
    score.fn(grounded, cfg(), VERSION)
    out = sample.fn(grounded, cfg(budget="0.1"), VERSION, "run1")
    assert out["selected"] == 25 and out["aligned"] and out["target_grounded"] == 20
    assert out["kl_after"] < out["kl_before"]
    assert out["align_level"] == 0 and "on level" not in out["line"]  # 25 reach its leaves
    free = run_sample(grounded, cfg(budget="0.1", align="none"), VERSION, "run2")
    assert out["kl_after"] < free["kl_after"]
    assert free["methods"]["tags"]["leaf_coverage"] > out["methods"]["tags"]["leaf_coverage"]
    with Store(grounded) as store:
        assert store.scalar("SELECT count(*) FROM selections WHERE run_id = 'run1'") == 25
        ranks = [r[0] for r in store.rows("SELECT rank FROM selections WHERE run_id = 'run1' "
                                          "ORDER BY rank")]
        assert ranks == list(range(1, 26))
        assert store.selection_metrics("run1")["tags"]["kl_target"] == pytest.approx(
            out["kl_after"])
        # beside the selection's length ratio, the target's own (what alignment follows)
        pool_texts = store.instance_texts(store.pool_ids(None))[0]
        target_texts = store.instance_texts(store.target_ids(None))[0]
    want = np.mean([len(t) for t in target_texts]) / np.mean([len(t) for t in pool_texts])
    assert out["target_length_ratio"] == pytest.approx(want)
    assert f"(the target's: {want:.2f}x)" in out["line"]
    json.dumps(out)  # the summary must be JSON-able for Prefect's result store


def test_the_length_ratio_is_measured_from_the_stored_instructions(grounded):
    """The stage reads each instruction's length in DuckDB; the stored metric is the picks'
    mean over the pool's, recomputed here from the texts themselves, and inside the band."""
    out = run_sample(grounded, cfg(budget="0.1", align="none"), VERSION, "len")
    with Store(grounded) as store:
        picked = [r[0] for r in store.rows("SELECT instance_id FROM selections WHERE run_id = "
                                           "'len' ORDER BY rank")]
        pool = store.pool_ids(None)
        lengths = {i: len(t) for i, t in zip(pool, store.instance_texts(pool)[0], strict=True)}
        stored = store.selection_metrics("len")["tags"]["length_ratio"]
    want = np.mean([lengths[i] for i in picked]) / np.mean(list(lengths.values()))
    assert stored == pytest.approx(want)
    assert 0.8 <= stored <= 1.25
    assert "mean instruction length" in out["line"]


def test_without_scores_sampling_falls_back_to_tree_quality(grounded):
    out = run_sample(grounded, cfg(budget="10"), VERSION, "r")
    assert out["scored"] == 0 and out["selected"] == 10


def test_every_method_compares_on_the_same_pool(grounded):
    with FakeOpenAIServer() as srv:
        c = cfg(budget="0.1")
        c["embed"] |= {"backend": "openai", "base_url": srv.base_url, "model": "fake-embed"}
        out = run_sample(grounded, c, VERSION, "cmp", methods=["tags", "random", "instag",
                                                                "deita", "kcenter", "quality"],
                         random_seeds=5)
    assert set(out["methods"]) == {"tags", "random", "instag", "deita", "kcenter", "quality"}
    assert all(m["selected"] == 25 for m in out["methods"].values())
    assert out["methods"]["random"]["seeds"] == 5
    assert "near_duplicates" in out["methods"]["deita"]
    with Store(grounded) as store:
        assert store.count("instance_embeddings") == 252
        assert len(store.selection_methods("cmp")) == 6


def test_a_missing_embedder_skips_embedding_methods_in_a_comparison_only(grounded):
    c = cfg(budget="10")
    c["embed"] |= {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "x"}
    c["llm"] |= {"max_retries": 0, "timeout_s": 2}
    out = run_sample(grounded, c, VERSION, "r", methods=["tags", "deita"])
    assert list(out["methods"]) == ["tags"] and "deita" in out["skipped"]
    c["sample"]["method"] = "deita"
    with pytest.raises(TagtreeError):
        run_sample(grounded, c, VERSION, "r2")


def test_export_in_the_input_format_keeps_the_original_lines(grounded, tmp_path):
    run_sample(grounded, cfg(budget="0.05"), VERSION, "run1")
    out = export.fn(grounded, cfg(), "run1", str(tmp_path / "out"))
    sel = tmp_path / "out" / "selection.jsonl"
    assert out["rows"] == 13 and str(sel) in out["files"]
    original = set(POOL.read_text().splitlines())
    lines = sel.read_text().splitlines()
    assert len(lines) == 13 and all(line in original for line in lines)
    manifest = json.loads((tmp_path / "out" / "selection.manifest.json").read_text())
    assert manifest["tree_version"] == VERSION and manifest["method"] == "tags"
    assert manifest["metrics"]["selected"] == 13 and manifest["budget"] == "0.05"
    assert manifest["files"][0]["rows"] == 13 and len(manifest["files"][0]["sha256"]) == 64
    with Store(grounded) as store:
        kinds = sorted(r[1] for r in store.exports("run1"))
    assert kinds == ["manifest", "selection"]


def test_export_as_chat_jsonl_and_parquet(grounded, tmp_path):
    run_sample(grounded, cfg(budget="5"), VERSION, "run1")
    c = cfg()
    c["export"]["format"] = "jsonl"
    run_export(grounded, c, "run1", str(tmp_path), name="chat")
    rows = [json.loads(line) for line in (tmp_path / "chat.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and rows[0]["messages"][0]["role"] == "user"
    assert rows[0]["messages"][-1]["role"] == "assistant"
    c["export"]["format"] = "parquet"
    run_export(grounded, c, "run1", str(tmp_path), name="table")
    t = pq.read_table(tmp_path / "table.parquet")
    assert t.num_rows == 5 and t.column("rank").to_pylist() == [1, 2, 3, 4, 5]


def test_export_of_a_missing_selection_is_a_clear_error(grounded, tmp_path):
    with pytest.raises(TagtreeError, match="no 'tags' selection"):
        run_export(grounded, cfg(), "nope", str(tmp_path))


def test_cache_fingerprint_changes_when_the_grounding_does(grounded):
    before = store_fingerprint(grounded, VERSION, ("grounding", "sources"))
    assert before == store_fingerprint(grounded, VERSION, ("grounding", "sources"))
    with Store(grounded) as store:
        store.run("UPDATE instance_nodes SET weight = weight * 2 WHERE node_id = 0")
    assert store_fingerprint(grounded, VERSION, ("grounding", "sources")) != before


def test_export_keeps_json_array_and_parquet_containers_per_format(db_path, tmp_path):
    import pyarrow as pa

    alpaca = [{"instruction": f"Task {i}", "input": "", "output": f"Answer {i}"} for i in range(5)]
    (tmp_path / "a.json").write_text(json.dumps(alpaca, indent=1))
    chats = [{"conversations": [{"from": "human", "value": f"Q{i}"},
                                {"from": "gpt", "value": f"A{i}"}]} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(chats), tmp_path / "c.parquet")
    with Store(db_path) as store:
        ingest_files(store, [str(tmp_path / "a.json"), str(tmp_path / "c.parquet")])
        tree = KnowledgeTree(np.array([2, 2, -1]), np.array([0, 0, 1]), ["x", "y", "r"],
                             size=np.ones(3, dtype=np.int64), version=VERSION)
        store.write_tree(VERSION, tree, np.zeros((3, 2), np.float32), [], np.zeros(0, int),
                         np.zeros(0), {}, {})
        ids = store.pool_ids()
        g = sp.csr_matrix((np.ones(9), (np.arange(9), np.arange(9) % 2)), shape=(9, 2))
        store.write_instance_nodes(VERSION, ids, node_weights(tree, g))
    run_sample(db_path, cfg(budget="100"), VERSION, "all")  # more than the pool: all 9
    c = cfg()
    c["export"]["format"] = "input"  # the default, auto, would merge them into one chat file
    out = run_export(db_path, c, "all", str(tmp_path / "out"))
    assert out["rows"] == 9
    array = json.loads((tmp_path / "out" / "selection.alpaca.json").read_text())
    assert sorted(r["instruction"] for r in array) == [f"Task {i}" for i in range(5)]
    table = pq.read_table(tmp_path / "out" / "selection.sharegpt.parquet").to_pylist()
    assert sorted(r["conversations"][0]["value"] for r in table) == [f"Q{i}" for i in range(4)]


def test_kmeans_is_a_mean_over_seeds_while_its_draws_stay_cheap(grounded, monkeypatch):
    """One k-means draw covered 5 to 8 of MT-Bench's 8 categories at 10% by seed, so compare
    averages it like random; on a pool where the draws would take minutes it stays one draw
    and a note says so."""
    import tagtree.stages.sample as stage
    from tagtree.stages.sample import comparison_notes

    score.fn(grounded, cfg(), VERSION)
    c = cfg(budget="0.05", align="none")
    mean = run_sample(grounded, c, VERSION, "avg", methods=["kmeans"], random_seeds=4)
    assert mean["methods"]["kmeans"]["seeds"] == 4 and not mean["single_draws"]
    draws = []
    for seed in range(4):  # the same four draws, one run each
        one = cfg(budget="0.05", align="none", seed=seed)
        draws.append(run_sample(grounded, one, VERSION, f"d{seed}",
                                methods=["kmeans"])["methods"]["kmeans"])
    for metric in ("leaf_coverage", "entropy_l0", "kl_target"):
        assert mean["methods"]["kmeans"][metric] == pytest.approx(
            np.mean([d[metric] for d in draws]))
    monkeypatch.setattr(stage, "SEEDED_KMEANS_WORK", 10.0)
    single = run_sample(grounded, c, VERSION, "one", methods=["kmeans", "random"],
                        random_seeds=4)
    assert "seeds" not in single["methods"]["kmeans"] and single["methods"]["random"]["seeds"] == 4
    assert single["methods"]["kmeans"]["leaf_coverage"] == draws[0]["leaf_coverage"]
    notes = comparison_notes(grounded, "one", single)
    assert any(n.startswith("kmeans is one draw (seed 0): 4 would be 4 k-means runs of k = 13")
               for n in notes), notes
