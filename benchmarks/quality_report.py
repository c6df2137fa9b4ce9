"""The printed report of ``benchmarks/quality.py``: one block per labelled set (tree purity and
NMI against the flat anchors, naming scores, selection coverage by budget, alignment)."""

from __future__ import annotations

from tagtree.stages.sample import SEEDED

# The methods every table compares TAGS with (quality.py runs each of them).
BASELINES = ("random", "kcenter", "deita", "instag", "quality", "kmeans")
# Baselines whose selection depends on a seed (SEEDED, as `tagtree compare` averages them):
# each figure is their mean over RANDOM_SEEDS seeds from the configured one (the range and the
# configured seed's own figure are printed beside it). One k-means draw covered 5-8 of
# MT-Bench's 8 categories at 10% by seed.
RANDOM_SEEDS = 20


def _named(name: str, majority: str | None, hit: bool) -> str:
    """A top-level name with its majority label, + when the name points at it, - when not."""
    return name if majority is None else f"{name} [{majority}{'+' if hit else '-'}]"


def _budget(b: float) -> str:
    return f"{b:.0%}" if b < 1 else f"{b:g}"


def print_result(r: dict) -> None:
    t = r["tree"]
    print(f"\n== {r['set']}: {r['pool']:,} instances, {r['tags']:,} tags, levels {t['levels']}, "
          f"tree {r['tree_seconds']} s")
    print(f"tree top level (k={t['top_k']}): purity {t['top_purity']:.3f} NMI {t['top_nmi']:.3f}"
          f" | flat anchor (mean of {t['flat_top_seeds']} seeds):"
          f" purity {t['flat_top_purity']:.3f} NMI {t['flat_top_nmi']:.3f}"
          f" ({t['flat_top_nmi_range'][0]:.3f}-{t['flat_top_nmi_range'][1]:.3f})"
          f" | margin {t['top_nmi'] - t['flat_top_nmi']:+.3f}")
    print(f"tree leaf level (k={t['leaf_k']}): NMI {t['leaf_nmi']:.3f} | flat anchor "
          f"(k={t['flat_leaf_k']}): NMI {t['flat_leaf_nmi']:.3f}")
    print("top-level names: " + " | ".join(t["top_names"]))
    nm = r["naming"]
    print(f"naming (top nodes with a clear majority label: {nm['scored']} of {nm['total']}; "
          "share whose majority label is the label name nearest to the node's name):")
    for variant, v in nm["variants"].items():
        print(f"  {variant:>12}: {v['share']:.0%} ({v['hits']}/{nm['scored']})   " + " | ".join(
            _named(n, nm["majority"].get(c), c in v["hit_nodes"])
            for c, n in zip(nm["nodes"], v["names"], strict=True)))
    if "llm" in nm:
        v = nm["llm"]
        print(f"  {'LLM (top)':>12}: {v['share']:.0%} ({v['hits']}/{v['scored']}) in "
              f"{v['seconds']} s, {v['refine']}   " + " | ".join(v["names"]))
    methods = ("tags",) + BASELINES
    print(f"{'budget':>7} {'k':>5} " + " ".join(f"{m:>8}" for m in methods)
          + "   (labels covered; entropy; mean length / pool's)")
    for b, row in r["selection"].items():
        m = row["methods"]
        label = f"{b:>7.0%}" if b < 1 else f"{b:>7}"
        print(f"{label} {row['k']:>5} " + " ".join(f"{m[x]['covered']:>8.1f}" for x in methods))
        print(f"{'':>13} " + " ".join(f"{m[x]['entropy']:>8.3f}" for x in methods))
        print(f"{'':>13} " + " ".join(f"{m[x]['length']:>8.2f}" for x in methods))
    for x in SEEDED:
        cells = []
        for b, row in r["selection"].items():
            c = row["methods"][x]
            if c["covered_range"][0] == c["covered_range"][1]:
                continue
            cells.append(f"{_budget(b)}: {c['covered']:.2f} ({c['covered_range'][0]}-"
                         f"{c['covered_range'][1]}; seed {c['seed']}: {c['covered_seed']})")
        if cells:
            print(f"{x} over {RANDOM_SEEDS} seeds: mean (range; the configured seed's own): "
                  + ", ".join(cells))
    if len(r.get("tree_seeds", {}).get("seeds", [])) > 1:
        ts = r["tree_seeds"]
        nmis = ts["top_nmi"]
        print(f"over tree seeds {ts['seeds'][0]}-{ts['seeds'][-1]}: top-level NMI mean "
              f"{sum(nmis) / len(nmis):.3f} ({min(nmis):.3f}-{max(nmis):.3f}; flat anchor "
              f"{t['flat_top_nmi']:.3f}); TAGS labels covered "
              + ", ".join(f"{_budget(float(b))}: {sum(v) / len(v):.2f} "
                          f"({min(v):.0f}-{max(v):.0f})" for b, v in ts["covered"].items()))
    bands = [f"{b:.0%}" if b < 1 else f"{b}" for b in r["selection"]]
    bands = [f"{label}: {row['methods']['random']['length_in_band']:.0%}"
             for label, row in zip(bands, r["selection"].values(), strict=True)
             if "length_in_band" in row["methods"]["random"]]
    if bands:
        print("random draws within 0.8-1.25x the pool's mean length: " + ", ".join(bands))
    if "alignment" in r:
        a = r["alignment"]
        print(f"alignment: pool target-label share {a['pool_share']:.3f}, pool KL "
              f"{a['pool_kl']:.3f}, target grounded {a['target_grounded']}")
        for b, row in a.items():
            if not isinstance(row, dict) or "methods" not in row:
                continue
            names = list(row["methods"])
            print(f"{b:>7.0%} {row['k']:>5} " + " ".join(f"{n:>13}" for n in names))
            print(f"{'share':>13} " + " ".join(f"{row['methods'][n]['share']:>13.3f}"
                                              for n in names))
            print(f"{'KL L' + str(row['level']):>13} " + " ".join(
                f"{row['methods'][n]['kl']:>13.3f}" for n in names)
                + f"   (pool {row['pool_kl']:.3f})")
            print(f"{'KL leaves':>13} " + " ".join(f"{row['methods'][n]['kl_leaf']:>13.3f}"
                                                  for n in names))
