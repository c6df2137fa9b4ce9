"""Choose the offline default tagger by measurement: tag MT-Bench's 80 questions with the
keyphrase tagger and with the local LLM tagger, build a tree from each with the default tree
settings, and score each tree's top level against MT-Bench's 8 categories (purity and NMI of
each instance's heaviest top-level node).

    .venv/bin/python benchmarks/choose_tagger.py [--db /tmp/choose.duckdb] [--taggers keyphrase llm]

Annotations are kept in the DuckDB file, so a re-run only rebuilds the trees.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson
from sklearn.metrics import normalized_mutual_info_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def purity(pred: list, truth: list) -> float:
    total = 0
    for c in set(pred):
        labels = [t for p, t in zip(pred, truth, strict=True) if p == c]
        total += max(labels.count(x) for x in set(labels))
    return total / len(pred)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "examples" / "mt_bench.jsonl"))
    ap.add_argument("--db", default="/tmp/tagtree-choose-tagger.duckdb")
    ap.add_argument("--taggers", nargs="+", default=["keyphrase", "llm"])
    args = ap.parse_args()

    from tagtree.config import Config
    from tagtree.io.annotator import annotate_store, open_tagger
    from tagtree.io.embedder import make_embedder
    from tagtree.io.ingest import ingest_files
    from tagtree.io.store import Store
    from tagtree.io.store.bench import raw_by_id, top_level_assignment
    from tagtree.stages.ground import ground_in
    from tagtree.stages.tree import build_tree_in

    with Store(args.db) as store:
        ingest_files(store, [args.data], fmt="auto", dataset="mt_bench", role="pool")
        category = {iid: orjson.loads(raw).get("category", "?")
                    for iid, raw in raw_by_id(store).items()}
    print(f"{len(category)} questions, {len(set(category.values()))} categories")
    results = []
    for kind in args.taggers:
        cfg = Config.model_validate({"annotate": {"tagger": kind}})
        t0 = time.perf_counter()
        with Store(args.db) as store, open_tagger(cfg) as tagger:
            summary = annotate_store(store, tagger)
        tag_s = time.perf_counter() - t0
        cfg = Config.model_validate({"annotate": {"tagger": kind},
                                     "tree": {"tagger": summary.tagger}})
        embedder = make_embedder(cfg)
        with Store(args.db) as store:
            built = build_tree_in(store, cfg, embedder)
            ground_in(store, cfg, embedder, built["tree_version"])
            top = top_level_assignment(store, built["tree_version"])
            tree = store.load_tree(built["tree_version"])
        ids = sorted(top)
        pred = [top[i] for i in ids]
        truth = [category[i] for i in ids]
        roots = tree.nodes_at(tree.depth - 1)
        results.append((kind, len(ids), built["n_tags"], len(roots), purity(pred, truth),
                        normalized_mutual_info_score(truth, pred), tag_s,
                        [tree.name[i] for i in roots]))
    print(f"{'tagger':<10} {'tagged':>6} {'tags':>6} {'top':>4} {'purity':>7} {'NMI':>6} "
          f"{'tag time':>9}")
    for kind, n, n_tags, n_top, pur, nmi, secs, _ in results:
        print(f"{kind:<10} {n:>6} {n_tags:>6} {n_top:>4} {pur:>7.3f} {nmi:>6.3f} {secs:>8.0f}s")
    for kind, *_, names in results:
        print(f"{kind} top level: " + " | ".join(names))
    if len(results) > 1:
        best = max(results, key=lambda r: (r[5], r[4]))
        print(f"better by NMI: {best[0]}")


if __name__ == "__main__":
    main()
