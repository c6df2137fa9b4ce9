"""Report stage (data): tree_nodes, tag_leaf, instance_nodes, selections, scores, runs, ... ->
one JSON-able dict of aggregates that ``tagtree.report_page.render_report`` turns into HTML (the
report stage's queries; the figures computed from them are ``tagtree.report_figures``'s).

Everything is aggregated in DuckDB (counts and probability mass per tree node and group); only
the top tags and a few example instructions of the ``report.detail_nodes`` most prominent nodes
leave the database, so the report of a 100K-instance run stays small. Groups: the pool
(datasets with role 'pool'), the target sample (role 'target') and every selection method stored
for the run.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from tagtree.align import lowest_level_within
from tagtree.config import ReportConfig, SampleConfig
from tagtree.errors import TagtreeError
from tagtree.io.store.annotate import token_cost
from tagtree.report_figures import (
    find_key,
    group_size,
    kl_divergence,
    kl_rows,
    level_dist,
    level_metrics,
    load_json,
    mass_share,
    normalized_entropy,
    pick_method,
    top_level,
)
from tagtree.sanitize import scrub

# Node -> itself and every ancestor, for one tree version (parent_id NULL or < 0 marks a root).
_ANCESTORS = """
    WITH RECURSIVE anc(node_id, anc_id) AS (
        SELECT node_id, node_id FROM tree_nodes WHERE tree_version = $tv
        UNION ALL
        SELECT a.node_id, t.parent_id FROM anc a
        JOIN tree_nodes t ON t.tree_version = $tv AND t.node_id = a.anc_id
        WHERE t.parent_id IS NOT NULL AND t.parent_id >= 0)"""

_GROUP_ROWS = """
    SELECT DISTINCT s.instance_id, 'pool' AS grp FROM instance_sources s
    JOIN datasets d ON d.name = s.dataset WHERE d.role = 'pool'
    UNION ALL
    SELECT DISTINCT s.instance_id, 'target' FROM instance_sources s
    JOIN datasets d ON d.name = s.dataset WHERE d.role = 'target'
    UNION ALL
    SELECT DISTINCT instance_id, 'sel:' || method FROM selections WHERE run_id = $run"""
_GROUPS = "groups AS (" + _GROUP_ROWS + ")"

# Each grounded instance carries mass 1, split over its leaves in proportion to the grounding
# weights; a node's mass is the sum over its leaves, so masses add up exactly along the tree.
_NODE_STATS = _ANCESTORS + ", " + _GROUPS + """,
    leaf_rows AS (
        SELECT i.instance_id, i.node_id, greatest(i.weight, 0) AS w FROM instance_nodes i
        JOIN tree_nodes t ON t.tree_version = i.tree_version AND t.node_id = i.node_id
        WHERE i.tree_version = $tv AND t.level = 0),
    leaf_mass AS (
        SELECT instance_id, node_id,
               CASE WHEN sum(w) OVER p > 0 THEN w / sum(w) OVER p ELSE 1.0 / count(*) OVER p END
               AS mass
        FROM leaf_rows WINDOW p AS (PARTITION BY instance_id)),
    node_mass AS (
        SELECT lm.instance_id, a.anc_id AS node_id, sum(lm.mass) AS mass
        FROM leaf_mass lm JOIN anc a ON a.node_id = lm.node_id GROUP BY ALL)
    SELECT g.grp, nm.node_id, count(*) AS n, sum(nm.mass) AS mass
    FROM node_mass nm JOIN groups g USING (instance_id) GROUP BY ALL"""

_TOP_TAGS = _ANCESTORS + """,
    ranked AS (
        SELECT a.anc_id AS node_id, tl.tag, row_number() OVER (
            PARTITION BY a.anc_id ORDER BY coalesce(t.frequency, 0) DESC, tl.tag) AS r
        FROM tag_leaf tl JOIN anc a ON a.node_id = tl.leaf_id
        LEFT JOIN tags t ON t.tree_version = tl.tree_version AND t.tag = tl.tag
        WHERE tl.tree_version = $tv AND list_contains($ids, a.anc_id))
    SELECT node_id, list(tag ORDER BY r) FROM ranked WHERE r <= $k GROUP BY 1"""

# Examples of a node: the pool instances placed under it, the chosen method's picks first (by
# rank), then the highest quality.
_EXAMPLES = _ANCESTORS + """,
    pool AS (
        SELECT DISTINCT s.instance_id FROM instance_sources s
        JOIN datasets d ON d.name = s.dataset WHERE d.role = 'pool'),
    node_inst AS (
        SELECT DISTINCT i.instance_id, a.anc_id AS node_id FROM instance_nodes i
        JOIN anc a ON a.node_id = i.node_id
        WHERE i.tree_version = $tv AND list_contains($ids, a.anc_id)),
    sel AS (SELECT instance_id, rank FROM selections WHERE run_id = $run AND method = $method),
    ranked AS (
        SELECT ni.node_id, ni.instance_id, sel.rank IS NOT NULL AS selected,
               row_number() OVER (PARTITION BY ni.node_id ORDER BY sel.rank IS NULL, sel.rank,
                                  sc.quality DESC NULLS LAST, ni.instance_id) AS r
        FROM node_inst ni JOIN pool USING (instance_id) LEFT JOIN sel USING (instance_id)
        LEFT JOIN scores sc ON sc.tree_version = $tv AND sc.instance_id = ni.instance_id)
    SELECT r.node_id, r.selected, left(i.instruction, $chars), length(i.instruction)
    FROM ranked r JOIN instances i ON i.id = r.instance_id
    WHERE r.r <= $k ORDER BY r.node_id, r.r"""


def gather_report_data(store, *, run_id: str | None = None, tree_version: str | None = None,
                       method: str | None = None, cfg: dict | None = None) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able values.

    ``run_id``: default the latest run with selections (else the latest run). ``method``: the
    selection shown as "selected"; default the run's ``sample.method`` or 'tags'. ``cfg``: a
    ``Config`` dumped to a dict; its ``report`` and ``llm`` sections are used.
    """
    cfg = cfg or {}
    rcfg = ReportConfig(**cfg.get("report", {})).model_dump()
    run = _pick_run(store, run_id)
    run_id = run["run_id"] if run else (run_id or "")
    tv = tree_version or _pick_tree_version(store, run)
    methods = [r[0] for r in store.rows(
        "SELECT DISTINCT method FROM selections WHERE run_id = ? ORDER BY 1", [run_id])]
    if method and method not in methods:
        raise TagtreeError(f"run '{run_id}' has no selection by '{method}' (it has: "
                           f"{', '.join(methods) or 'none'})")
    method = method or pick_method(methods, run)
    # KL uses the sampling stage's smoothing (the run's own when recorded), so figures agree.
    sample_cfg = ((run or {}).get("config") or {}).get("sample") or cfg.get("sample") or {}
    smoothing = float(sample_cfg.get("align_smoothing", SampleConfig().align_smoothing))
    nodes = _tree_nodes(store, tv)
    idx = {n["id"]: i for i, n in enumerate(nodes)}
    levels = np.array([n["level"] for n in nodes], dtype=np.int64)
    groups = _node_stats(store, tv, run_id, len(nodes), idx)
    for stats in groups.values():  # every grounded instance has mass 1 over the leaves
        stats["grounded_mass"] = float(stats["mass"][levels == 0].sum())
    main = f"sel:{method}" if method else None
    empty = {"n": np.zeros(len(nodes)), "mass": np.zeros(len(nodes))}
    pool, target, chosen = groups.get("pool", empty), groups.get("target"), groups.get(main, empty)
    for i, node in enumerate(nodes):
        node["pool"] = int(pool["n"][i])
        node["selected"] = int(chosen["n"][i])
        node["target"] = int(target["n"][i]) if target else 0
        node["pool_mass"] = round(float(pool["mass"][i]), 4)
        node["target_share"] = mass_share(target, i) if target else None
        node["selected_share"] = mass_share(chosen, i)
        node["pool_share"] = mass_share(pool, i)
    _attach_tags_and_examples(store, nodes, idx, tv, run_id, method or "", rcfg)
    series = {"pool": pool} | {k[4:]: v for k, v in groups.items() if k.startswith("sel:")}
    baselines = _baselines(store, series, target, levels, run_id, tv, smoothing)
    return {
        "meta": {"run_id": run_id, "tree_version": tv, "method": method, "methods": methods,
                 "db": store.path, "generated_at": dt.datetime.now(dt.UTC).isoformat(
                     timespec="seconds"), "chart": rcfg["chart"],
                 "levels_shown": int(rcfg["levels_shown"]),
                 "max_sectors": int(rcfg["max_sectors"]), "kl_smoothing": smoothing},
        "tree": {"nodes": nodes, "depth": int(levels.max()) + 1 if len(levels) else 0,
                 "n_pool": group_size(pool), "n_selected": group_size(chosen),
                 "n_target": group_size(target) if target else 0},
        "top_level": top_level(nodes, levels, pool, chosen, target),
        "kl": kl_rows(baselines, method),
        "levels": level_metrics(series, levels),
        "quality": _quality(store, tv, run_id, method, int(rcfg["quality_bins"])),
        "baselines": baselines,
        "manifest": _manifest(store, run, tv, cfg),
    }


# -- choosing what to show ------------------------------------------------------------------------
def _pick_run(store, run_id: str | None) -> dict | None:
    cols = "run_id, kind, status, started_at, finished_at, config, fingerprints, timings, metrics"
    if run_id:
        rows = store.rows(f"SELECT {cols} FROM runs WHERE run_id = ?", [run_id])
        if not rows and not store.scalar("SELECT count(*) FROM selections WHERE run_id = ?",
                                         [run_id]):
            known = ", ".join(r[0] for r in store.runs(5)) or "none"
            raise TagtreeError(f"no run '{run_id}' in {store.path} (latest runs: {known})")
        if not rows:
            return {"run_id": run_id}
    else:
        rows = store.rows(
            f"SELECT {cols} FROM runs r ORDER BY EXISTS (SELECT 1 FROM selections s "
            "WHERE s.run_id = r.run_id) DESC, started_at DESC NULLS LAST LIMIT 1")
        if not rows:
            latest = store.scalar("SELECT max(run_id) FROM selections")
            return {"run_id": latest} if latest else None
    names = [c.strip() for c in cols.split(",")]
    run = dict(zip(names, rows[0], strict=True))
    for key in ("config", "fingerprints", "timings", "metrics"):
        run[key] = load_json(run[key])
    for key in ("started_at", "finished_at"):
        run[key] = run[key].isoformat(sep=" ", timespec="seconds") if run[key] else None
    return run


def _pick_tree_version(store, run: dict | None) -> str:
    tv = find_key((run or {}).get("metrics"), "tree_version")
    if tv and store.scalar("SELECT count(*) FROM tree_nodes WHERE tree_version = ?", [tv]):
        return tv
    tv = store.scalar(
        "SELECT n.tree_version FROM tree_nodes n LEFT JOIN trees t USING (tree_version) "
        "GROUP BY ALL ORDER BY max(t.created_at) DESC NULLS LAST, 1 DESC LIMIT 1")
    if tv is None:
        raise TagtreeError(f"no knowledge tree in {store.path}: run `tagtree curate` (or the "
                           "tree stage) before `tagtree report`")
    return tv


# -- the tree -------------------------------------------------------------------------------------
def _tree_nodes(store, tv: str) -> list[dict]:
    rows = store.rows(
        "SELECT node_id, coalesce(parent_id, -1), level, name, coalesce(description, ''), size "
        "FROM tree_nodes WHERE tree_version = ? ORDER BY level DESC, node_id", [tv])
    return [{"id": r[0], "parent": r[1], "level": r[2], "name": r[3], "description": r[4],
             "size": r[5]} for r in rows]


def _node_stats(store, tv, run_id, n_nodes, idx) -> dict[str, dict[str, np.ndarray]]:
    table = store.arrow(_NODE_STATS, {"tv": tv, "run": run_id})
    out: dict[str, dict[str, np.ndarray]] = {}
    grp = table.column("grp").to_pylist()
    node = table.column("node_id").to_pylist()
    n = table.column("n").to_numpy()
    mass = table.column("mass").to_numpy()
    for g, v, c, m in zip(grp, node, n, mass, strict=True):
        if v not in idx:
            continue
        stats = out.setdefault(g, {"n": np.zeros(n_nodes), "mass": np.zeros(n_nodes)})
        stats["n"][idx[v]] = c
        stats["mass"][idx[v]] = m
    totals = store.rows(
        f"SELECT grp, count(DISTINCT instance_id) FROM ({_GROUP_ROWS}) GROUP BY 1",
        {"run": run_id})
    for g, total in totals:
        out.setdefault(g, {"n": np.zeros(n_nodes), "mass": np.zeros(n_nodes)})["size"] = total
    return out


def _attach_tags_and_examples(store, nodes, idx, tv, run_id, method, rcfg) -> None:
    """Tags, description and examples for the ``detail_nodes`` most prominent nodes (top levels
    first, then the most pool mass): the file grows with them, so a huge tree stays small."""
    order = sorted(range(len(nodes)), key=lambda i: (-nodes[i]["level"], -nodes[i]["pool_mass"]))
    detail = [nodes[i]["id"] for i in order[:int(rcfg["detail_nodes"])]]
    for node in nodes:
        node["tags"], node["examples"], node["detail"] = [], [], False
    for node_id in detail:
        nodes[idx[node_id]]["detail"] = True
    for node in nodes:
        if not node["detail"]:
            node["description"] = ""
    if not detail:
        return
    if rcfg["tags_per_node"]:
        for node_id, tags in store.rows(_TOP_TAGS, {"tv": tv, "k": int(rcfg["tags_per_node"]),
                                                    "ids": detail}):
            nodes[idx[node_id]]["tags"] = list(tags)
    if rcfg["examples_per_node"]:
        params = {"tv": tv, "run": run_id, "method": method, "k": int(rcfg["examples_per_node"]),
                  "chars": int(rcfg["example_chars"]), "ids": detail}
        for node_id, selected, text, length in store.rows(_EXAMPLES, params):
            cut = text.rstrip() + " …" if length > len(text) else text
            nodes[idx[node_id]]["examples"].append({"text": cut, "selected": bool(selected)})


def _quality(store, tv, run_id, method, bins) -> dict:
    pool = store.arrow(
        "SELECT s.quality, sel.instance_id IS NOT NULL AS selected FROM scores s "
        "JOIN (SELECT DISTINCT instance_id FROM instance_sources x JOIN datasets d "
        "      ON d.name = x.dataset WHERE d.role = 'pool') p USING (instance_id) "
        "LEFT JOIN (SELECT instance_id FROM selections WHERE run_id = ? AND method = ?) sel "
        "USING (instance_id) WHERE s.tree_version = ? AND s.quality IS NOT NULL",
        [run_id, method or "", tv])
    q = pool.column("quality").to_numpy(zero_copy_only=False).astype(float)
    if not len(q):
        return {"edges": [], "pool": [], "selected": []}
    picked = pool.column("selected").to_numpy(zero_copy_only=False).astype(bool)
    edges = np.histogram_bin_edges(q, bins=bins)
    return {"edges": [round(float(e), 5) for e in edges],
            "pool": np.histogram(q, edges)[0].tolist(),
            "selected": np.histogram(q[picked], edges)[0].tolist(),
            "pool_mean": round(float(q.mean()), 4),
            "selected_mean": round(float(q[picked].mean()), 4) if picked.any() else None}


def _baselines(store, series, target, levels, run_id, tv, smoothing) -> dict:
    """One row per method of the run: metrics computed here from the grounding, overridden and
    extended by the ones the sampling stage stored in ``selection_metrics`` (same names)."""
    means = dict(store.rows(
        "SELECT sel.method, avg(s.quality) FROM selections sel JOIN scores s "
        "ON s.instance_id = sel.instance_id AND s.tree_version = ? WHERE sel.run_id = ? "
        "GROUP BY 1", [tv, run_id]))
    t = level_dist(target, levels, 0) if target and len(levels) else None
    # The level the run's selections are aligned on (tagtree.align.alignment_level: the lowest
    # where the target touches at most k nodes), so the pool is judged there beside them.
    shown = [group_size(s) for name, s in series.items() if name != "pool"]
    level = None
    if t is not None and t.sum() > 0 and shown:
        depth = int(levels.max()) + 1
        touched = [int((target["mass"][levels == lv] > 0).sum()) for lv in range(depth)]
        level = lowest_level_within(touched, max(shown), depth)
    pool_leaves = series["pool"]["n"][levels == 0] > 0
    rows: dict[str, dict[str, Any]] = {}
    for name, stats in series.items():  # the names and definitions of tagtree.metrics
        row = rows.setdefault(name, {})
        row["selected"] = group_size(stats)
        if name != "pool" and means.get(name) is not None:
            row["mean_quality"] = round(means[name], 4)
        if len(levels):
            leaves = stats["n"][levels == 0] > 0
            row["leaf_coverage"] = round(float(leaves[pool_leaves].sum()
                                               / max(1, pool_leaves.sum())), 4)
            row["entropy_l0"] = round(normalized_entropy(
                level_dist(stats, levels, 0), int(pool_leaves.sum())), 4)
        if t is not None and t.sum() > 0:
            row["kl_target"] = round(
                kl_divergence(t, level_dist(stats, levels, 0), smoothing), 4)
        if level is not None:
            row["align_level"] = level
            row["kl_target_aligned"] = round(kl_divergence(
                level_dist(target, levels, level), level_dist(stats, levels, level),
                smoothing), 4)
    stored = store.scalar("SELECT count(*) FROM information_schema.tables "
                          "WHERE table_name = 'selection_metrics'")
    if stored:
        for method, metric, value in store.rows(
                "SELECT method, metric, value FROM selection_metrics WHERE run_id = ? "
                "ORDER BY method, metric", [run_id]):
            rows.setdefault(method, {})[str(metric)] = value
    columns: list[str] = []
    for row in rows.values():
        columns += [c for c in row if c not in columns]
    order = ["pool"] + sorted(m for m in rows if m != "pool")
    return {"columns": columns, "rows": [{"method": m} | rows[m] for m in order if m in rows]}


# -- the run manifest -----------------------------------------------------------------------------
def _manifest(store, run: dict | None, tv: str, cfg: dict) -> dict:
    stats = store.stats()
    run = run or {}
    config = run.get("config") or cfg
    llm = config.get("llm", {}) if isinstance(config, dict) else {}
    tokens = store.rows(
        "SELECT tagger, count(*), count(*) FILTER (WHERE status = 'ok'), "
        "coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) "
        "FROM annotations GROUP BY 1 ORDER BY 2 DESC")
    judges = store.rows(
        "SELECT judge, count(*), coalesce(sum(prompt_tokens), 0), "
        "coalesce(sum(completion_tokens), 0) FROM judgements GROUP BY 1 ORDER BY 2 DESC")
    prompt = sum(r[3] for r in tokens) + sum(r[2] for r in judges)
    completion = sum(r[4] for r in tokens) + sum(r[3] for r in judges)
    batch = store.batch_tokens()
    b_in = min(sum(r[1] or 0 for r in batch), prompt)
    b_out = min(sum(r[2] or 0 for r in batch), completion)
    usd = token_cost(prompt, completion, float(llm.get("price_in_per_mtok") or 0),
                     float(llm.get("price_out_per_mtok") or 0), b_in, b_out,
                     float(llm.get("batch_price_share", 0.5)))
    levels = store.rows("SELECT level, count(*) FROM tree_nodes WHERE tree_version = ? "
                        "GROUP BY 1 ORDER BY 1 DESC", [tv])
    return {
        "run": {k: run.get(k) for k in ("run_id", "kind", "status", "started_at", "finished_at")},
        "inputs": [{"dataset": n, "role": r, "format": f, "distinct": d, "rows": c}
                   for n, r, f, d, c in stats["datasets"]],
        "counts": {
            "instances": stats["instances"],
            "annotated ok": sum(r[2] for r in tokens),
            "annotations": sum(r[1] for r in tokens),
            "canonical tags": store.scalar("SELECT count(*) FROM tags WHERE tree_version = ?",
                                           [tv]),
            "tree nodes per level (top→leaves)": " / ".join(str(c) for _, c in levels),
            "scored": store.scalar("SELECT count(*) FROM scores WHERE tree_version = ?", [tv]),
        },
        "quarantine": [{"reason": r, "field": f, "rows": n} for r, f, n in stats["quarantine"]],
        "fingerprints": _fingerprints(store, run, tv, tokens, judges),
        "timings": _timings(store, run, tv),
        "cost": {"prompt tokens": prompt, "completion tokens": completion,
                 "estimated USD": round(usd, 4),
                 "of which Batch API tokens (in/out)": f"{b_in:,} / {b_out:,}",
                 "prices (USD per 1M in/out)": f"{llm.get('price_in_per_mtok', 0)} / "
                                               f"{llm.get('price_out_per_mtok', 0)}"},
        "config": scrub(config) if isinstance(config, dict) else {},
    }


def _fingerprints(store, run: dict, tv: str, tokens, judges) -> dict:
    """Which tree, tagger (model + prompt + parameters), embedder and judge made these numbers."""
    described = dict(store.rows("SELECT tagger, description::VARCHAR FROM taggers"))
    tree_stats = load_json(store.scalar("SELECT stats::VARCHAR FROM trees WHERE tree_version = ?",
                                    [tv]))
    out: dict[str, Any] = {"tree_version": tv}
    if tree_stats.get("embedder"):
        out["embedder"] = tree_stats["embedder"]
    for tagger, n, *_ in tokens:
        out[f"tagger {tagger}"] = f"{n:,} annotations; {described.get(tagger) or ''}"[:400]
    for judge, n, *_ in judges:
        out[f"judge {judge}"] = f"{n:,} ratings"
    return out | {str(k): v for k, v in (run.get("fingerprints") or {}).items()}


def _timings(store, run: dict, tv: str) -> dict:
    """Seconds per step: the run's own timings, else each stage summary's ``seconds``."""
    out: dict[str, Any] = dict(run.get("timings") or {})
    for stage, summary in (run.get("metrics") or {}).items():
        if isinstance(summary, dict) and isinstance(summary.get("seconds"), (int, float)):
            out.setdefault(stage, round(summary["seconds"], 3))
    build = load_json(store.scalar("SELECT stats::VARCHAR FROM trees WHERE tree_version = ?",
                               [tv])).get("build_seconds")
    if build is not None:
        out.setdefault("tree build", build)
    if run.get("started_at") and run.get("finished_at"):
        start, end = (dt.datetime.fromisoformat(run[k]) for k in ("started_at", "finished_at"))
        out["run wall clock"] = round((end - start).total_seconds(), 1)
    return out
