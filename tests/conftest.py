"""Shared fixtures. Tests use real components: real DuckDB files, real HTTP servers on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True, scope="session")
def _memoized_local_embeddings():
    """The real MiniLM, memoized per process: a text's vector is computed by ``LocalEmbedder``
    the first time any test asks for it and reused after (keyed by ``max_tokens`` too).

    Why: dozens of flow tests curate the same example files, and embedding their ~330 instance
    texts costs ~15 s of the 2 cores every time (a third of a flow test); the embedder's own
    tests still compute every vector once. Each vector is one the model produced for that text,
    so no assertion sees anything the embedder would not give (subprocesses, e.g. Dask workers
    and CLI runs, do not share it)."""
    import numpy as np

    from tagtree.io.embedder import CHARS_PER_TOKEN_CAP, LocalEmbedder

    original = LocalEmbedder.embed
    memo: dict[tuple[int, str], np.ndarray] = {}

    def embed(self, texts):
        # Keyed by the part the embedder reads (it cuts every text there first), so a huge
        # row's text is not kept alive for the session.
        cap = self.max_tokens * CHARS_PER_TOKEN_CAP
        keys = [(self.max_tokens, t[:cap]) for t in texts]
        missing = [k for k in dict.fromkeys(keys) if k not in memo]
        if missing:
            memo.update(zip(missing, original(self, [t for _, t in missing]), strict=True))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, k in enumerate(keys):
            out[i] = memo[k]
        return out

    LocalEmbedder.embed = embed
    yield
    LocalEmbedder.embed = original


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "test.duckdb")


@pytest.fixture
def store(db_path):
    from tagtree.io.store import Store

    with Store(db_path) as s:
        yield s


@pytest.fixture
def fake_openai():
    """A real OpenAI-compatible server on 127.0.0.1 (tests/support/openai_server.py): default
    responder returns {"tags": [...]} from the last user message; ``inject()`` adds faults."""
    from tests.support.openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def report_db(report_db_template, tmp_path) -> str:
    """A copy of ``report_db_template`` that a test may change."""
    import shutil

    return str(shutil.copy(report_db_template, tmp_path / "report.duckdb"))


@pytest.fixture(scope="session")
def report_db_template(tmp_path_factory) -> str:
    """A small realistic store for the report: the example data ingested (plus one instruction
    holding ``<script>alert(1)</script>`` and a bad line), a 3-level tree grouped by the examples'
    own labels, scores, two selections of run 'run-1' and a finished run row."""
    tmp_path = tmp_path_factory.mktemp("report")
    import hashlib
    import re

    import orjson
    import pyarrow as pa

    from tagtree.config import Config
    from tagtree.io.ingest import ingest_files
    from tagtree.io.store import Store

    extra = tmp_path / "xss.jsonl"
    extra.write_text(orjson.dumps({"instruction": "Fix this page: <script>alert(1)</script>",
                                   "input": "", "output": "Escape user text."}).decode()
                     + "\n{not json\n")
    db = str(tmp_path / "report.duckdb")
    groups = {"Coding & Math": ["coding", "math"], "Writing <i>&amp;</i> Roleplay": [
        "writing", "roleplay", "extraction"], "Knowledge": ["reasoning", "stem", "humanities"],
        "Everyday apps": ["apps"]}
    mids = [m for ms in groups.values() for m in ms]
    with Store(db) as store:
        ingest_files(store, [str(EXAMPLES / "self_instruct_alpaca.jsonl"),
                             str(EXAMPLES / "mt_bench.jsonl"), str(extra)], role="pool")
        ingest_files(store, [str(EXAMPLES / "target_coding_math.jsonl")], role="target")
        rows = store.rows("SELECT id, instruction, raw FROM instances ORDER BY id")
        by_mid, inst_tags = {}, {}
        for iid, text, raw in rows:
            raw = orjson.loads(raw)
            app = str(raw.get("motivation_app", "")).lower()
            mid = raw.get("category") or ("coding" if "<script>" in text or re.search(
                r"code|leet|sql|python|github", app) else "math" if "math" in app else "apps")
            words = sorted(set(re.findall(r"[a-z]{7,}", text.lower())))[:3] or ["misc"]
            inst_tags[iid] = (mid, words)
            for w in words:
                by_mid.setdefault(mid, {}).setdefault(w, 0)
                by_mid[mid][w] += 1
        tag_leaf, leaves = {}, []  # leaf = (mid, bucket); tags go to the first mid seen
        for mid in mids:
            for bucket in range(2):
                leaves.append((mid, bucket))
            for tag in by_mid.get(mid, {}):
                bucket = int(hashlib.md5(tag.encode()).hexdigest(), 16) % 2
                tag_leaf.setdefault(tag, leaves.index((mid, bucket)))
        n_leaves, n_mid = len(leaves), len(mids)
        parent = [n_leaves + mids.index(m) for m, _ in leaves]
        parent += [n_leaves + n_mid + i for i, ms in enumerate(groups.values()) for _ in ms]
        parent += [-1] * len(groups)
        level = [0] * n_leaves + [1] * n_mid + [2] * len(groups)
        name = [f"{m} part {b + 1}" for m, b in leaves] + mids + list(groups)
        store.insert_arrow("trees", pa.table({"tree_version": ["tv1"], "config": ["{}"]}))
        store.insert_arrow("tree_nodes", pa.table({
            "tree_version": ["tv1"] * len(name), "node_id": list(range(len(name))),
            "parent_id": [p if p >= 0 else None for p in parent], "level": level,
            "name": name, "description": [f"about {n}" for n in name],
            "size": [sum(1 for t in tag_leaf.values() if t == i) for i in range(len(name))]}))
        freq = {}
        for _, words in inst_tags.values():
            for w in words:
                freq[w] = freq.get(w, 0) + 1
        store.write_tags("tv1", freq, {})
        store.insert_arrow("tag_leaf", pa.table({
            "tree_version": ["tv1"] * len(tag_leaf), "tag": list(tag_leaf),
            "leaf_id": list(tag_leaf.values()), "distance": [0.1] * len(tag_leaf)}))
        placed = {(iid, tag_leaf[w]) for iid, (_, words) in inst_tags.items() for w in words}
        placed |= {(iid, parent[leaf]) for iid, leaf in placed}  # ancestors, as grounding does
        placed |= {(iid, parent[node]) for iid, node in placed if parent[node] >= 0}
        placed = sorted(placed)
        store.insert_arrow("instance_nodes", pa.table({
            "tree_version": ["tv1"] * len(placed), "instance_id": [p[0] for p in placed],
            "node_id": [p[1] for p in placed], "weight": [1.0] * len(placed)}))
        ids = sorted(inst_tags)
        quality = {i: int(hashlib.md5(i.encode()).hexdigest(), 16) % 1000 / 1000 for i in ids}
        store.insert_arrow("scores", pa.table({
            "tree_version": ["tv1"] * len(ids), "instance_id": ids,
            "richness": [len(inst_tags[i][1]) / 3 for i in ids], "judge": [None] * len(ids),
            "quality": [quality[i] for i in ids]}))
        store.insert_arrow("annotations", pa.table({
            "instance_id": ids, "tagger": ["keyphrase:v1:3f2a"] * len(ids),
            "tags": [inst_tags[i][1] for i in ids], "status": ["ok"] * len(ids),
            "prompt_tokens": [120] * len(ids), "completion_tokens": [20] * len(ids)}))
        pool = store.pool_ids()
        text = {iid: t for iid, t, _ in rows}
        aligned = sorted(pool, key=lambda i: (inst_tags[i][0] not in ("coding", "math"),
                                              "<script>" not in text[i], -quality[i]))[:40]
        rand = sorted(pool, key=lambda i: hashlib.sha1(i.encode()).hexdigest())[:40]
        sel = [("tags", i, r) for r, i in enumerate(aligned)]
        sel += [("random", i, r) for r, i in enumerate(rand)]
        store.insert_arrow("selections", pa.table({
            "run_id": ["run-1"] * len(sel), "method": [s[0] for s in sel],
            "instance_id": [s[1] for s in sel], "rank": [s[2] for s in sel],
            "gain": [1.0 / (1 + s[2]) for s in sel]}))
        cfg = Config().model_dump()
        cfg["llm"]["price_in_per_mtok"], cfg["llm"]["price_out_per_mtok"] = 0.15, 0.6
        store.start_run("run-1", "curate", cfg)
        store.finish_run("run-1", "completed", metrics={"tree": {"tree_version": "tv1"}},
                         timings={"ingest": 0.4, "annotate": 12.5, "tree": 3.2},
                         fingerprints={"embedder": "minilm-int8:384", "prompt": "tags-v1"})
        store.run("CREATE TABLE IF NOT EXISTS selection_metrics (run_id VARCHAR, method VARCHAR, "
                  "metric VARCHAR, value DOUBLE)")
        store.run("INSERT INTO selection_metrics VALUES ('run-1', 'tags', 'win rate', 0.61), "
                  "('run-1', 'random', 'win rate', 0.48)")
    return db
