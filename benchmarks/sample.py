"""Sampling benchmark: a synthetic grounded pool (default 1M instances on a 50K-leaf tree) and a
5% budget; prints wall time and peak RSS of TAGS and of every baseline, plus their coverage.

Each method runs in its own child process (peak RSS is per process and never goes down), which
loads the pool from an .npz written once. The pool: leaf popularity is Zipf-like (a few leaves
hold many near-duplicate instances, most are rare), each instance sits on 1-4 leaves with weights
summing to 1, tags of one instance mostly share a branch, quality ~ Beta(4, 2), and 64-d
embeddings are the leaf's centroid plus noise (for DEITA / k-center), and instruction lengths
are log-normal. ``tags:skewed`` draws the lengths from the quality instead (the best instances
the longest), so the selection drifts out of the length band and the cost of the repair
(``sample.length_band``) is measured.

    .venv/bin/python benchmarks/sample.py                     # 1M x 50K, all methods
    .venv/bin/python benchmarks/sample.py --n 100000 --leaves 5000 --methods tags,deita
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tagtree.hierarchy import KnowledgeTree  # noqa: E402

METHODS = ("tags", "tags:stochastic", "tags:penalty", "tags:quota", "random", "instag", "deita",
           "kcenter", "quality")


def synthetic_tree(n_leaves: int, branching: int = 8, root_max: int = 20) -> KnowledgeTree:
    parents, levels = [], []
    size, level, offset = n_leaves, 0, 0
    while size > root_max:
        up = -(-size // branching)
        parents.append(offset + size + np.arange(size) // branching)
        levels.append(np.full(size, level))
        offset += size
        size, level = up, level + 1
    parents.append(np.full(size, -1))
    levels.append(np.full(size, level))
    parent = np.concatenate(parents)
    return KnowledgeTree(parent, np.concatenate(levels), [""] * len(parent), version="bench")


def synthetic_pool(n: int, n_leaves: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_leaves + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())
    n_tags = rng.integers(1, 5, size=n)
    main = rng.choice(n_leaves, size=n, p=popularity)
    rows = np.repeat(np.arange(n), n_tags)
    # extra tags: a neighbouring leaf (same branch) most of the time, anywhere otherwise
    first = np.cumsum(n_tags) - n_tags
    is_main = np.zeros(len(rows), dtype=bool)
    is_main[first] = True
    near = np.clip(np.repeat(main, n_tags) + rng.integers(-4, 5, size=len(rows)), 0, n_leaves - 1)
    far = rng.choice(n_leaves, size=len(rows), p=popularity)
    cols = np.where(is_main, np.repeat(main, n_tags),
                    np.where(rng.random(len(rows)) < 0.8, near, far))
    g = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n_leaves))
    g.sum_duplicates()
    g = sp.csr_matrix(sp.diags(1.0 / np.asarray(g.sum(axis=1)).ravel()) @ g)
    quality = rng.beta(4, 2, size=n)
    # a target sample living on 2% of the leaves, for the aligned variants
    target = np.zeros(n_leaves)
    chosen = rng.choice(n_leaves, size=max(1, n_leaves // 50), replace=False)
    target[chosen] = rng.integers(1, 20, size=len(chosen))
    centroids = rng.normal(size=(n_leaves, dim)).astype(np.float32)
    emb = centroids[main] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return g, quality, emb, target


def rss_mb() -> float:
    """Peak RSS of this process. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so
    a child would report its parent's peak (the parent holds the whole synthetic pool)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_one(data: str, method: str, budget: float, kcenter_pool: int) -> dict:
    """Child process: load, build the problem, select, measure."""
    from tagtree.baselines import make_selector
    from tagtree.metrics import evaluate
    from tagtree.sampling import SelectionProblem
    from tagtree.scoring import TreeScorer

    z = np.load(data)
    tree = KnowledgeTree(z["parent"], z["level"], [""] * len(z["parent"]), version="bench")
    g = sp.csr_matrix((z["g_data"], z["g_indices"], z["g_indptr"]), shape=tuple(z["g_shape"]))
    # TAGS reads embeddings too (its centrality and leaf-kernel terms): measured with them.
    emb = z["emb"] if method.partition(":")[0] in ("deita", "kcenter", "tags") else None
    name, _, variant = method.partition(":")  # e.g. "tags:stochastic", "tags:quota"
    target = z["target"]  # KL is reported for every method; only tags:penalty/quota use it
    lengths = z["lengths"]
    if variant == "skewed":  # length rank = quality rank: the quality bonus favours long rows
        q = z["quality"]
        lengths = np.exp(5.5 + 1.5 * (q - q.mean()) / q.std())
    t0 = time.perf_counter()
    scorer = TreeScorer().fit(tree, g)
    problem = SelectionProblem(tree, scorer.weights_, z["quality"], scorer.ic_, embeddings=emb,
                               target_mass=target, lengths=lengths)
    setup_s = time.perf_counter() - t0
    rss_loaded = rss_mb()
    k = int(round(budget * problem.n))
    params = {"random_state": 0, "max_pool": kcenter_pool}
    if name == "tags":  # the shipped defaults, as `tagtree sample` runs them
        from tagtree.config import Config
        from tagtree.stages.sample import selector_params

        params = selector_params(Config(), "tags", 0) | {"align": "none"}
        if variant == "stochastic":
            params["strategy"] = "stochastic"
        elif variant in ("penalty", "quota"):
            params["align"] = variant
    t1 = time.perf_counter()
    sel = make_selector(name, **params).fit(problem, k)
    select_s = time.perf_counter() - t1
    m = evaluate(problem, sel.selected_, near_duplicates=False)
    extra = {"kl_target": round(m["kl_target"], 4)} if "kl_target" in m else {}
    if name == "tags":
        extra |= {"length_ratio": round(m["length_ratio"], 3),
                  "length_swaps": sel.length_swaps_, "length_weight": sel.length_weight_}
    return extra | {"method": method, "k": k, "setup_s": round(setup_s, 1),
            "select_s": round(select_s, 1), "rss_loaded_mb": round(rss_loaded),
            "peak_rss_mb": round(rss_mb()), "leaf_coverage": round(m["leaf_coverage"], 4),
            "entropy_l0": round(m["entropy_l0"], 4), "mean_quality": round(m["mean_quality"], 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--leaves", type=int, default=50_000)
    ap.add_argument("--budget", type=float, default=0.05)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="comma-separated; also 'tags:stochastic' (stochastic greedy) and "
                    "'tags:penalty' / 'tags:quota' (aligned to a synthetic target on 2%% of "
                    "the leaves) and 'tags:skewed' (lengths follow quality: the length "
                    "band's repair at work)")
    ap.add_argument("--kcenter-pool", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.method, args.budget, args.kcenter_pool)))
        return
    t0 = time.perf_counter()
    tree = synthetic_tree(args.leaves)
    g, quality, emb, target = synthetic_pool(args.n, args.leaves, args.dim, args.seed)
    print(f"pool {args.n:,} instances, {g.nnz:,} leaf weights, tree {tree.n_nodes:,} nodes "
          f"({tree.n_leaves:,} leaves, {tree.depth} levels), budget {args.budget:.0%}; "
          f"generated in {time.perf_counter() - t0:.0f}s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "pool.npz")
        np.savez(data, parent=tree.parent, level=tree.level, g_data=g.data, g_indices=g.indices,
                 g_indptr=g.indptr, g_shape=np.array(g.shape), quality=quality, emb=emb,
                 target=target, lengths=np.random.default_rng(args.seed + 1).lognormal(
                     5.5, 0.8, args.n))
        del g, emb
        results = []
        for method in args.methods.split(","):
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--child", data, "--method", method, "--budget",
                 str(args.budget), "--kcenter-pool", str(args.kcenter_pool)],
                capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{method}: failed\n{proc.stderr[-2000:]}", flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["wall_s"] = round(time.perf_counter() - start, 1)
            results.append(r)
            print(json.dumps(r), flush=True)
    by = {r["method"]: r for r in results}
    if "tags" in by and "deita" in by:
        ratio = by["tags"]["select_s"] / max(by["deita"]["select_s"], 1e-9)
        print(f"TAGS selection {by['tags']['select_s']}s = {ratio:.2f}x DEITA's "
              f"{by['deita']['select_s']}s; TAGS peak RSS {by['tags']['peak_rss_mb']} MB "
              "(targets: <= 120 s, <= 4 GB, <= 3x DEITA)")


if __name__ == "__main__":
    main()
