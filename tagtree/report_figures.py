"""The report's figures from aggregates already read (``tagtree.io.store.report`` reads them):
shares, per-level distributions, KL and entropy as the sampling stage defines them, the rows
and picks the page shows. Pure: no SQL, no I/O."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from tagtree import align


def load_json(value) -> Any:
    if value is None or isinstance(value, (dict, list)):
        return value or {}
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}


def find_key(value, key: str):
    """First value of ``key`` anywhere in nested dicts/lists (run metrics hold stage summaries)."""
    if isinstance(value, dict):
        if isinstance(value.get(key), str):
            return value[key]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = find_key(item, key)
            if found:
                return found
    return None


def pick_method(methods: list[str], run: dict | None) -> str | None:
    configured = ((run or {}).get("config") or {}).get("sample", {}).get("method")
    for choice in (configured, "tags"):
        if choice in methods:
            return choice
    return methods[0] if methods else None


def group_size(stats) -> int:
    return int(stats.get("size", 0)) if stats else 0


def mass_share(stats, i: int) -> float:
    """A node's share of the group's mass: grounded instances of a group sum to 1 per level."""
    total = stats.get("grounded_mass", 0.0)
    return round(float(stats["mass"][i]) / total, 5) if total else 0.0


# -- distributions and metrics ---------------------------------------------------------------
def level_dist(stats, levels: np.ndarray, level: int) -> np.ndarray:
    mass = stats["mass"][levels == level]
    total = mass.sum()
    return mass / total if total > 0 else mass


def kl_divergence(target: np.ndarray, other: np.ndarray, smoothing: float) -> float:
    """KL(target || other) in nats, both smoothed as the sampling stage does (``tagtree.align``:
    a ``smoothing`` share of the uniform distribution mixed in), so the figures agree."""
    return align.kl_divergence(align.smoothed(target, smoothing), align.smoothed(other, smoothing))


def normalized_entropy(p: np.ndarray, n_reachable: int | None = None) -> float:
    """Shannon entropy / log(nodes the pool reaches at that level) (``tagtree.metrics``'s
    definition): 1 = mass spread evenly, 0 = all in one node."""
    n = len(p) if n_reachable is None else n_reachable
    if n < 2 or p.sum() <= 0:
        return 0.0
    q = p[p > 0] / p.sum()
    return float(-(q * np.log(q)).sum() / np.log(n))


def kl_rows(baselines: dict, method: str | None) -> list[dict]:
    """KL(target || ·) of the pool and each method, as in the baselines table (stored figures
    win, e.g. the random baseline's mean over seeds): ``kl`` on the leaves, ``kl_aligned`` on
    the ``level`` the run's budget is aligned on."""
    rows = []
    for row in baselines["rows"]:
        name = row["method"]
        if row.get("kl_target") is None:
            continue
        label = ("pool (before selection)" if name == "pool"
                 else f"{name} (shown)" if name == method else name)
        out = {"label": label, "method": name, "kl": round(float(row["kl_target"]), 4)}
        if row.get("kl_target_aligned") is not None:  # on the level the budget is aligned on
            out |= {"level": int(row["align_level"]),
                    "kl_aligned": round(float(row["kl_target_aligned"]), 4)}
        rows.append(out)
    return rows


def level_metrics(series, levels) -> dict:
    """Per level, top first: coverage = share of the nodes the pool reaches that a group reaches;
    entropy normalised by the same count."""
    order = sorted(set(levels.tolist()), reverse=True)
    reach = {lv: series["pool"]["n"][levels == lv] > 0 for lv in order}
    out = {"levels": order, "n_nodes": [int((levels == lv).sum()) for lv in order],
           "coverage": {}, "entropy": {}}
    for name, stats in series.items():
        out["coverage"][name] = [
            round(float((stats["n"][levels == lv] > 0)[reach[lv]].sum() / max(1, reach[lv].sum())),
                  4) for lv in order]
        out["entropy"][name] = [
            round(normalized_entropy(level_dist(stats, levels, lv), int(reach[lv].sum())), 4)
            for lv in order]
    return out


def top_level(nodes, levels, pool, chosen, target) -> dict:
    if not len(levels):
        return {"names": [], "pool": [], "selected": [], "target": []}
    top = [i for i, n in enumerate(nodes) if n["parent"] < 0]
    top.sort(key=lambda i: -pool["mass"][i])
    return {"names": [nodes[i]["name"] for i in top],
            "pool": [nodes[i]["pool_share"] for i in top],
            "selected": [nodes[i]["selected_share"] for i in top],
            "target": [nodes[i]["target_share"] for i in top] if target else []}
