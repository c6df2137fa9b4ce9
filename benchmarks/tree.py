"""Benchmark of the tree stage: build trees over 100K and 1M synthetic clustered 384-d tags and
ground 1M instances x 6 tags; prints wall time and peak RSS (each size in its own process).

    .venv/bin/python benchmarks/tree.py            # 100K and 1M
    .venv/bin/python benchmarks/tree.py --sizes 100000

Targets on a 2-core machine: 100K <= 60 s and <= 2 GB; 1M <= 15 min and <= 10 GB; grounding
1M instances x 6 tags <= 60 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 384


def synthetic_tags(n: int, seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    """Clustered unit vectors: 20 topics > 10 subtopics > n/60 concepts, about 6 tags each."""
    rng = np.random.default_rng(seed)

    def unit(v):
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    topics = unit(rng.standard_normal((20, DIM), dtype=np.float32))
    subs = unit(np.repeat(topics, 10, axis=0) + 0.6 * unit(rng.standard_normal((200, DIM),
                                                                               dtype=np.float32)))
    n_concepts = max(1, n // 6)
    parent = rng.integers(0, 200, n_concepts)
    concepts = unit(subs[parent] + 0.45 * unit(rng.standard_normal((n_concepts, DIM),
                                                                     dtype=np.float32)))
    x = np.empty((n, DIM), np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        which = rng.integers(0, n_concepts, stop - start)
        noise = unit(rng.standard_normal((stop - start, DIM), dtype=np.float32))
        x[start:stop] = unit(concepts[which] + 0.3 * noise)
    return x


def cpu_seconds() -> float:
    """CPU time of this process: on a shared machine, wall time / CPU time shows the contention."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def run_one(n: int, instances: int) -> dict:
    from tagtree.grounding import leaf_weight_matrix, node_weight_matrix
    from tagtree.tree import TreeBuilder

    t0 = time.perf_counter()
    x = synthetic_tags(n)
    gen_s = time.perf_counter() - t0
    tags = [f"tag {i}" for i in range(n)]
    freqs = np.random.default_rng(1).zipf(2.0, n).clip(1, 10_000)
    t0, c0 = time.perf_counter(), cpu_seconds()
    b = TreeBuilder(random_state=0, k_search=True).fit(tags, x, freqs)  # as the pipeline
    build_s, build_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    build_rss = peak_rss_gb()
    out = {"tags": n, "generate_s": round(gen_s, 1), "build_s": round(build_s, 1),
           "build_cpu_s": round(build_cpu, 1),
           "levels": b.level_sizes_, "peak_rss_gb_after_build": round(build_rss, 2)}
    if instances:
        rng = np.random.default_rng(2)
        t0 = time.perf_counter()
        tag_ids = rng.integers(0, n, (instances, 6))
        inst = np.repeat(np.arange(instances), 6)
        leaves = leaf_weight_matrix(inst, b.tag_leaf_[tag_ids.ravel()], instances,
                                    b.tree_.n_leaves)
        nodes = node_weight_matrix(leaves, b.tree_)
        out |= {"ground_instances": instances, "ground_s": round(time.perf_counter() - t0, 1),
                "instance_node_weights": int(nodes.nnz)}
    out["peak_rss_gb"] = round(peak_rss_gb(), 2)
    return out


class _NoEmbedder:
    fingerprint = "synthetic@1"
    dim = DIM

    def embed(self, texts):  # every tag is known to the tree: never called
        raise AssertionError("unexpected embedding request")


def run_store_ground(n_tags: int, instances: int, db: str) -> dict:
    """End-to-end grounding through DuckDB: annotations (instances x 6 raw tags) -> aliases ->
    tag_leaf -> instance_nodes, timed around ``tagtree.stages.ground.ground_in``."""
    import pyarrow as pa

    from tagtree.config import Config
    from tagtree.io.store import Store
    from tagtree.stages.ground import ground_in
    from tagtree.tree import TreeBuilder

    Path(db).unlink(missing_ok=True)
    x = synthetic_tags(n_tags)
    tags = [f"tag {i}" for i in range(n_tags)]
    b = TreeBuilder(random_state=0, k_search=True).fit(tags, x)
    rng = np.random.default_rng(3)
    picks = rng.integers(0, n_tags, (instances, 6))
    tag_arr = pa.array(tags)
    flat = tag_arr.take(pa.array(picks.ravel()))
    offsets = pa.array(np.arange(0, instances * 6 + 1, 6, dtype=np.int32))
    with Store(db) as store:
        store.write_tags("bench", {t: 1 for t in tags}, {t: t for t in tags})
        store.write_tree("bench", b.tree_, b.centroids_, tags, b.tag_leaf_, b.tag_similarity_,
                         {}, {"tagger": "bench", "far_similarity": 0.0})
        store.insert_arrow("annotations", pa.table({
            "instance_id": pa.array([f"i{i:08d}" for i in range(instances)]),
            "tagger": pa.array(["bench"] * instances),
            "tags": pa.ListArray.from_arrays(offsets, flat),
            "status": pa.array(["ok"] * instances)}))
        t0 = time.perf_counter()
        out = ground_in(store, Config(), _NoEmbedder(), "bench", "bench")
        secs = time.perf_counter() - t0
    Path(db).unlink(missing_ok=True)
    return {"store_ground_s": round(secs, 1), "instances": out["instances"],
            "instance_nodes": out["instance_nodes"], "peak_rss_gb": round(peak_rss_gb(), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--instances", type=int, default=1_000_000,
                    help="instances x 6 tags grounded on the largest tree")
    ap.add_argument("--store-ground", type=int, metavar="INSTANCES",
                    help="only: ground INSTANCES x 6 tags through DuckDB on a 20K-tag tree")
    ap.add_argument("--db", default="/tmp/tagtree-bench-ground.duckdb")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ground", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.ground)))
        return
    if args.store_ground:
        r = run_store_ground(20_000, args.store_ground, args.db)
        print(f"grounding through DuckDB: {r['instances']:,} instances x 6 tags in "
              f"{r['store_ground_s']:.1f} s -> {r['instance_nodes']:,} instance_nodes rows, "
              f"peak RSS {r['peak_rss_gb']:.2f} GB")
        return
    import os

    print(f"machine: {os.cpu_count()} CPU cores (shared with other jobs: times are upper bounds)")
    for n in args.sizes:
        ground = args.instances if n == max(args.sizes) else 0
        res = subprocess.run([sys.executable, __file__, "--one", str(n), "--ground", str(ground)],
                             capture_output=True, text=True, check=False)
        if res.returncode:
            print(f"{n:,} tags: failed\n{res.stderr[-2000:]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        line = (f"{r['tags']:>9,} tags: build {r['build_s']:7.1f} s wall "
                f"({r['build_cpu_s']:.0f} s CPU), levels "
                f"{' > '.join(f'{v:,}' for v in r['levels'])}, peak RSS {r['peak_rss_gb']:.2f} GB")
        if "ground_s" in r:
            line += (f"; grounding {r['ground_instances']:,} instances x 6 tags "
                     f"{r['ground_s']:.1f} s ({r['instance_node_weights']:,} node weights)")
        print(line, flush=True)


if __name__ == "__main__":
    main()
