"""Tree stage against a real DuckDB file: annotations -> tags -> tree -> grounding, reuse by content
hash, incremental grounding of held-out tags and the drift statistic."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from tagtree.config import Config
from tagtree.io.store import Store
from tagtree.stages.ground import ground_in
from tagtree.stages.tree import build_tree_in
from tasks.embed import embed_tags
from tasks.ground import ground
from tasks.tree import build_tree
from tests.unit.test_tree_planted import planted_tags

TAGGER = "fake-tagger@1"


class PlantedEmbedder:
    """Embeds planted tag names to their planted vectors; anything else to a random far vector."""

    fingerprint = "planted@1"
    dim = 384

    def __init__(self, names, vectors):
        self.table = dict(zip(names, vectors, strict=True))
        self.calls = 0

    def embed(self, texts):
        self.calls += len(texts)
        out = []
        for t in texts:
            if t in self.table:
                out.append(self.table[t])
            else:
                seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
                v = np.random.default_rng(seed).normal(size=self.dim)
                out.append(v / np.linalg.norm(v))
        return np.array(out, dtype=np.float32)


def add_annotations(store: Store, rows: list[tuple[str, list[str]]], tagger=TAGGER):
    table = pa.table({"instance_id": [r[0] for r in rows], "tagger": [tagger] * len(rows),
                      "tags": [r[1] for r in rows], "status": ["ok"] * len(rows)})
    store.insert_arrow("annotations", table, replace=True)


@pytest.fixture
def planted():
    names, x, topic, sub, concept = planted_tags(n_topics=4, n_sub=3, n_concepts=4, n_tags=8)
    return names, x, topic, sub, concept


def cfg(**tree):
    # Planted tags of one concept are ~0.95 cosine-similar: keep them apart (no near-dup merge).
    base = {"leaf_size": 6, "branching": 4, "root_max": 4, "merge_threshold": 0.999}
    return Config.model_validate({"tree": base | tree})


def annotate_training(store, names, concept, held_out=(6, 7)):
    """Each instance: the training tags of one concept, with raw case/space variants."""
    rows = []
    for c in np.unique(concept):
        tags = [n for n, cc in zip(names, concept, strict=True)
                if cc == c and int(n.split("tag")[-1]) not in held_out]
        for j in range(3):
            raw = [t.upper() if j == 1 else f"  {t}  " if j == 2 else t for t in tags]
            rows.append((f"i{c}-{j}", raw))
    add_annotations(store, rows)


def test_build_ground_reuse_and_incremental(store, planted):
    names, x, topic, sub, concept = planted
    emb = PlantedEmbedder(names, x)
    annotate_training(store, names, concept)
    first = build_tree_in(store, cfg(), emb)
    n_train = len(np.unique(concept)) * 6
    assert first["raw_tags"] == 3 * n_train and first["tags"] == n_train  # variants folded
    assert first["reused"] is False and first["embedded_new"] == first["tags"]
    again = build_tree_in(store, cfg(), emb)
    assert again["reused"] and again["tree_version"] == first["tree_version"]
    assert again["embedded_new"] == 0
    assert build_tree_in(store, cfg(seed=1), emb)["tree_version"] != first["tree_version"]
    version = first["tree_version"]

    tree = store.load_tree(version)
    assert tree.version == version and tree.n_leaves == first["n_leaves"]
    g = ground_in(store, cfg(), emb, version)
    assert g["instances"] == 3 * len(np.unique(concept)) and g["new_tags"] == 0
    ids, m = store.instance_leaf_matrix(version)
    assert m.shape == (len(ids), tree.n_leaves)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-5)
    per_level = store.rows("SELECT tn.level, n.instance_id, sum(n.weight) FROM instance_nodes n "
                           "JOIN tree_nodes tn USING (tree_version, node_id) WHERE "
                           "n.tree_version = ? GROUP BY 1, 2", [version])
    assert all(abs(w - 1) < 1e-5 for _, _, w in per_level)

    # Held-out tags of known concepts arrive later: placed under their subtopic, no rebuild.
    tag_leaf = dict(store.rows("SELECT tag, leaf_id FROM tag_leaf WHERE tree_version = ?",
                               [version]))
    held = [(n, s, c) for n, s, c in zip(names, sub, concept, strict=True)
            if int(n.split("tag")[-1]) in (6, 7)]
    add_annotations(store, [(f"new-{i}", [n]) for i, (n, _, _) in enumerate(held)])
    g2 = ground_in(store, cfg(), emb, version)
    # "far" is calibrated at the 5% quantile of the tree's own tags: in-distribution newcomers
    # are far about 5% of the time.
    assert g2["new_tags"] == len(held) and g2["far_new_tags"] <= 0.15 * len(held)
    assert not g2["rebuild_advised"]
    tag_leaf2 = dict(store.rows("SELECT tag, leaf_id FROM tag_leaf WHERE tree_version = ?",
                                [version]))
    right = 0
    for n, s, _ in held:
        siblings = [t for t, ss in zip(names, sub, strict=True) if ss == s and t in tag_leaf]
        sub_nodes = {tree.path(tag_leaf[t])[1] for t in siblings}
        majority = max(sub_nodes, key=lambda v: sum(tree.path(tag_leaf[t])[1] == v
                                                     for t in siblings))
        right += tree.path(tag_leaf2[n])[1] == majority
    assert right / len(held) >= 0.9

    # Tags from nowhere are far: drift rises and a rebuild is advised.
    # The tree's own tags sit below the 5% quantile 5% of the time: that is the baseline.
    assert g2["drift"] < 0.1
    # Drift counts tag occurrences: 60 instances x 5 far tags against ~960 known occurrences.
    add_annotations(store, [(f"alien{j}", [f"alien topic {(j * 5 + i) % 100}" for i in range(5)])
                            for j in range(60)])
    g3 = ground_in(store, cfg(drift_threshold=0.15), emb, version)
    assert g3["far_new_tags"] >= 95 and g3["drift"] > 0.15 and g3["rebuild_advised"]


def test_no_annotations_is_a_clear_error(store):
    from tagtree.errors import TagtreeError

    with pytest.raises(TagtreeError, match="annotate"):
        build_tree_in(store, cfg(), PlantedEmbedder([], np.zeros((0, 384))))


def test_tasks_with_the_local_embedder(db_path):
    """The Prefect task bodies end to end with the shipped model on real phrases."""
    topics = {
        "python": ["python list comprehension", "python generators", "python decorators",
                   "python dictionaries", "pandas dataframe", "numpy arrays"],
        "cooking": ["baking bread", "sourdough starter", "roasting vegetables",
                    "pasta sauce recipe", "knife skills", "kneading dough"],
        "fitness": ["strength training", "running endurance", "yoga poses",
                    "stretching routine", "weight lifting form", "cardio workout"],
    }
    with Store(db_path) as s:
        add_annotations(s, [(f"{k}{i}", tags[i:i + 3] + tags[:1])
                            for k, tags in topics.items() for i in range(4)])
    conf = Config.model_validate({"tree": {"leaf_size": 2, "branching": 3, "root_max": 3}})
    emb = embed_tags.fn(db_path, conf.model_dump())
    assert emb == {"tagger": "fake-tagger@1", "embedder": "minilm-l6-int8@1", "tags": 18,
                   "embedded_new": 18}
    out = build_tree.fn(db_path, conf.model_dump())
    assert out["tags"] == 18 and out["levels"][-1] <= 3 and out["embedded_new"] == 0
    g = ground.fn(db_path, conf.model_dump(), out["tree_version"])
    assert g["instances"] == 12 and g["new_tags"] == 0 and g["drift"] < 0.1
    with Store(db_path) as s:
        tree = s.load_tree()
        leaf = dict(s.rows("SELECT tag, leaf_id FROM tag_leaf"))
    top = {k: [tree.path(leaf[t])[-1] for t in tags] for k, tags in topics.items()}
    majority = {k: max(set(v), key=v.count) for k, v in top.items()}
    assert len(set(majority.values())) == 3  # each topic has its own top-level node
    assert sum(v.count(majority[k]) for k, v in top.items()) >= 16  # of 18 tags


def test_tree_roundtrip_and_leaf_matrix_order(store):
    from tagtree.grounding import leaf_weight_matrix, node_weight_matrix
    from tagtree.hierarchy import KnowledgeTree

    tree = KnowledgeTree(parent=[2, 2, -1], level=[0, 0, 1], name=["a", "b", "root"],
                         description=["da", "db", "dr"], size=np.array([2, 1, 3]))
    centroids = np.eye(3, dtype=np.float32)
    store.write_tree("v1", tree, centroids, ["x", "y", "z"], np.array([0, 0, 1]),
                     np.array([1.0, 0.9, 0.8]), {"k": 1}, {"tagger": "t"})
    back = store.load_tree()
    assert back.version == "v1" and back.parent.tolist() == [2, 2, -1]
    assert back.name == ["a", "b", "root"] and back.description[2] == "dr"
    assert back.size.tolist() == [2, 1, 3]
    np.testing.assert_allclose(store.leaf_centroids("v1"), centroids[:2])
    leaves = leaf_weight_matrix([0, 0, 1], [0, 1, 1], 2, 2)
    store.write_instance_nodes("v1", ["i1", "i2"], node_weight_matrix(leaves, tree))
    ids, m = store.instance_leaf_matrix("v1", ["i2", "missing", "i1"])
    assert ids == ["i2", "missing", "i1"]
    np.testing.assert_allclose(m.toarray(), [[0, 1], [0, 0], [0.5, 0.5]])
    assert store.tree_summary("v1") == [(0, 2, 3), (1, 1, 3)]


def test_an_older_trees_tags_survive_a_rebuild(store, planted):
    """tags/tag_aliases are a tree version's own: a rebuild that merges tags differently writes
    its own rows, and grounding and reporting on the older tree still follow the older ones
    (with one global set, the rebuild's merges re-routed the old tree's instances)."""
    from tagtree.io.store.report import gather_report_data

    names, x, topic, sub, concept = planted
    emb = PlantedEmbedder(names, x)
    annotate_training(store, names, concept)
    old = build_tree_in(store, cfg(), emb)["tree_version"]  # no merges (threshold 0.999)
    ground_in(store, cfg(), emb, old)
    grounding = "SELECT instance_id, node_id, weight FROM instance_nodes " \
                "WHERE tree_version = ? ORDER BY 1, 2"
    before = {"tags": store.tag_frequencies(old), "aliases": store.aliases(old),
              "nodes": store.rows(grounding, [old])}

    # Planted tags of a concept are ~0.95 similar: at 0.9 they merge into fewer tags.
    new = build_tree_in(store, cfg(merge_threshold=0.9), emb)
    assert new["tree_version"] != old and new["merged"] > 0
    assert store.latest_tree_version() == new["tree_version"]
    n_new = len(store.tag_frequencies(new["tree_version"])[0])
    assert n_new == new["tags"] < len(before["tags"][0])
    assert store.tag_frequencies()[0] == store.tag_frequencies(new["tree_version"])[0]
    merged = {r: t for r, t in store.aliases(new["tree_version"]).items()
              if before["aliases"][r] != t}
    assert merged  # the same raw tags lead elsewhere under the new tree

    again = ground_in(store, cfg(), emb, old)  # the old tree grounds as it did
    assert again["new_tags"] == 0
    tags, freqs = store.tag_frequencies(old)
    assert tags == before["tags"][0] and freqs.tolist() == before["tags"][1].tolist()
    assert store.aliases(old) == before["aliases"]
    assert store.rows(grounding, [old]) == before["nodes"]
    # New raw tags grounded on the old tree extend the old tree's map only.
    add_annotations(store, [("late", ["  " + names[0].upper() + "  "])])
    ground_in(store, cfg(), emb, old)
    assert "  " + names[0].upper() + "  " in store.aliases(old)
    assert "  " + names[0].upper() + "  " not in store.aliases(new["tree_version"])
    counts = dict(store.rows("SELECT tree_version, count(*) FROM tags GROUP BY 1"))
    assert counts == {old: len(before["tags"][0]), new["tree_version"]: new["tags"]}
    store.run("INSERT INTO runs (run_id, kind, status, config) VALUES ('r1', 'sample', "
              "'completed', ?)", ['{"sample": {"method": "tags"}}'])
    data = gather_report_data(store, run_id="r1", tree_version=old)
    assert data["manifest"]["counts"]["canonical tags"] == len(before["tags"][0])


V3_TAGS = {
    "tags": "CREATE TABLE tags (tag VARCHAR PRIMARY KEY, frequency BIGINT NOT NULL)",
    "tag_aliases": "CREATE TABLE tag_aliases (raw_tag VARCHAR PRIMARY KEY, tag VARCHAR NOT NULL)",
}


def test_a_version_3_store_keeps_its_tags_under_every_stored_tree(db_path):
    """Upgrade to schema 4: the global tags of a version-3 file become each stored tree's own
    (every tree grounded through them before), so nothing an old tree shows changes."""
    import duckdb

    from tagtree.io.store import SCHEMA_VERSION, TABLES

    con = duckdb.connect(db_path)
    for name, ddl in TABLES.items():
        con.execute(V3_TAGS.get(name, ddl))
    con.execute("INSERT INTO meta VALUES ('schema_version', '3')")
    con.execute("INSERT INTO trees (tree_version) VALUES ('tA'), ('tB')")
    con.execute("INSERT INTO tags VALUES ('python', 3), ('sql', 1)")
    con.execute("INSERT INTO tag_aliases VALUES ('Python', 'python'), ('python', 'python'), "
                "('SQL', 'sql')")
    con.close()

    with Store(db_path) as store:
        assert store.schema_version() == SCHEMA_VERSION == 4
        for version in ("tA", "tB"):
            tags, freqs = store.tag_frequencies(version)
            assert tags == ["python", "sql"] and freqs.tolist() == [3, 1]
            assert store.aliases(version) == {"Python": "python", "python": "python",
                                              "SQL": "sql"}
        store.add_aliases("tA", {"PYTHON": "python"})
        assert "PYTHON" not in store.aliases("tB")
        assert not store.rows("SELECT table_name FROM information_schema.tables "
                              "WHERE table_name LIKE '%_v3'")
    with Store(db_path) as store:  # opening again migrates nothing twice
        assert store.count("tags") == 4 and store.count("tag_aliases") == 7


def test_a_version_3_store_without_trees_drops_its_unowned_tags(db_path):
    import duckdb

    from tagtree.io.store import TABLES

    con = duckdb.connect(db_path)
    for name, ddl in TABLES.items():
        con.execute(V3_TAGS.get(name, ddl))
    con.execute("INSERT INTO meta VALUES ('schema_version', '3')")
    con.execute("INSERT INTO tags VALUES ('python', 3)")
    con.close()
    with Store(db_path) as store:
        assert store.count("tags") == 0  # the next build writes its tree's tags
        cols = [r[0] for r in store.rows("SELECT column_name FROM information_schema.columns "
                                         "WHERE table_name = 'tags' ORDER BY ordinal_position")]
        assert cols == ["tree_version", "tag", "frequency"]
