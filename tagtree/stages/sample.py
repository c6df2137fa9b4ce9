"""Sample stage: scores + instance_nodes (+ target grounding, instance_embeddings) -> selections
and selection_metrics."""

from __future__ import annotations

import time

import numpy as np

from tagtree.align import leaf_mass, level_kl
from tagtree.baselines import make_selector
from tagtree.config import Config, parse_budget
from tagtree.errors import EmbeddingUnavailable, TagtreeError
from tagtree.metrics import evaluate, pool_kl
from tagtree.sampling import SelectionProblem
from tagtree.scoring import TreeScorer
from tagtree.stages.common import as_config, open_store
from tagtree.stages.resources import Resources, resources_or_new
from tagtree.stages.results import SampleResult
from tagtree.vectors import l1_normalise_rows

EMBED_SHARD = 5_000  # instances embedded and written per shard: an interrupted run resumes
NEEDS_EMBEDDINGS = ("deita", "kcenter", "kmeans")
# The seeded baselines' figures are a mean over ``random_seeds`` draws: random always, one pick
# per k-means cluster while all its draws together cost at most this much n * k (on MT-Bench
# one draw covered 5 to 8 of 8 categories at 10% by seed; a pool of 100K at 5% would take
# minutes a draw).
SEEDED = ("random", "kmeans")  # the baselines whose selection depends on a seed
SEEDED_KMEANS_WORK = 2e7


def draws_for(method: str, n: int, k: int, seeds: int) -> int:
    """How many seeds a method's reported figures average over."""
    if seeds <= 1 or method not in SEEDED:
        return 1
    if method == "kmeans" and float(n) * k * seeds > SEEDED_KMEANS_WORK:
        return 1
    return seeds


def tags_uses_embeddings(config: Config) -> bool:
    """TAGS reads instance embeddings for its centrality and node-kernel terms; without them
    (an embedder that cannot run) it still selects, with both terms off."""
    s = config.sample
    return s.centrality > 0 or s.kernel_tau < 1 or s.kernel_top_tau < 1 or s.kernel_cooc_tau < 1


def ensure_embeddings(store, config: Config, ids: list[str], embedder=None, *,
                      resources: Resources | None = None) -> np.ndarray:
    """Instance vectors (instruction + response) for ``ids``, computing only missing ones;
    ``embedder``: the one to use (default: the configured one). An embedder that cannot be
    built or fails raises ``EmbeddingUnavailable``."""
    try:
        if embedder is None:
            embedder = resources_or_new(resources).embedder_for(config)
        missing = store.missing_instance_embeddings(embedder.fingerprint, ids)
    except EmbeddingUnavailable:
        raise
    except TagtreeError as exc:
        raise EmbeddingUnavailable(str(exc)) from exc
    for start in range(0, len(missing), EMBED_SHARD):
        part = missing[start:start + EMBED_SHARD]
        instructions, responses = store.instance_texts(part)
        texts = [f"{a}\n{b}".strip() for a, b in zip(instructions, responses, strict=True)]
        try:
            vectors = embedder.embed(texts)
        except EmbeddingUnavailable:
            raise
        except TagtreeError as exc:
            raise EmbeddingUnavailable(str(exc)) from exc
        store.write_instance_embeddings(embedder.fingerprint, part, vectors)
    return store.instance_vectors(embedder.fingerprint, ids)


def load_problem(store, config: Config, tree_version: str | None, *,
                 embeddings: bool = False, target: list[str] | None = None,
                 resources: Resources | None = None):
    """The pool as a SelectionProblem, its ids, and facts about the target sample."""
    tree = store.load_tree(tree_version)
    ids = store.pool_ids(config.sample.pool)
    if not ids:
        if config.sample.pool:
            raise TagtreeError(f"no instances in the pool datasets {', '.join(config.sample.pool)}"
                               " (sample.pool names datasets the store does not hold)")
        raise TagtreeError("the pool is empty (run `tagtree ingest` first)")
    _, leaves = store.instance_leaf_matrix(tree.version, ids)
    sc = config.score
    scorer = TreeScorer(judge_weight=sc.judge_weight, richness_quantile=sc.richness_quantile,
                        quality_floor=sc.quality_floor).fit(tree, leaves)
    stored = store.quality_scores(tree.version, ids)
    quality = np.where(np.isnan(stored), scorer.quality_, stored)  # unscored: tree-only quality
    info = {"target_instances": 0, "target_grounded": 0, "scored": int((~np.isnan(stored)).sum())}
    target_mass = None
    if target is not None:  # loaded even with align "none": KL is still measured
        tids = store.target_ids(target or None)
        if target and not tids:
            raise TagtreeError(f"no target sample named {', '.join(target)} in the store (ingest "
                               "it with `tagtree ingest --target FILE` and ground it on the tree)")
        if tids:
            _, tleaves = store.instance_leaf_matrix(tree.version, tids)
            info["target_instances"] = len(tids)
            info["target_grounded"] = int((np.diff(tleaves.indptr) > 0).sum())
            if info["target_grounded"]:
                target_mass = leaf_mass(l1_normalise_rows(tleaves))
    vectors = ensure_embeddings(store, config, ids, resources=resources) if embeddings else None
    lengths = store.instruction_lengths(ids)
    problem = SelectionProblem(tree, scorer.weights_, quality, scorer.ic_, embeddings=vectors,
                               target_mass=target_mass, lengths=lengths)
    if info["target_instances"] and lengths.mean() > 0:
        # An aligned selection follows the target, not the pool's length (the length band
        # leaves it alone): the target's own ratio says what length to expect.
        info["target_length_ratio"] = float(
            store.instruction_lengths(tids).mean() / lengths.mean())
    return problem, ids, info


def selector_params(config: Config, method: str, seed: int | None = None) -> dict:
    s = config.sample
    seed = s.seed if seed is None else seed
    if method == "tags":
        return {"level_decay": s.level_decay, "concave": s.concave, "mass_weight": s.mass_weight,
                "quality_weight": s.quality_weight, "align": s.align,
                "align_lambda": s.align_lambda, "align_smoothing": s.align_smoothing,
                "align_level": s.align_level, "typical": s.coverage == "typical",
                "centrality": s.centrality,
                "kernel_tau": s.kernel_tau, "kernel_top_tau": s.kernel_top_tau,
                "kernel_cooc_tau": s.kernel_cooc_tau,
                "kernel_cooc_min_cos": s.kernel_cooc_min_cos,
                "align_leaf_weight": s.align_leaf_weight, "length_band": s.length_band,
                "top_mass_power": s.top_mass_power,
                "strategy": s.strategy, "epsilon": s.epsilon, "random_state": seed}
    return {"random_state": seed, "threshold": s.deita_threshold, "max_pool": s.kcenter_max_pool}


def run_sample(store, cfg, tree_version: str | None, run_id: str, *,
               methods: list[str] | None = None, target: list[str] | None = None,
               random_seeds: int = 1, resources: Resources | None = None) -> dict:
    """Select with each method (default: ``sample.method``), store selections and metrics.

    ``target``: None aligns to every stored target sample; a list names the target datasets to
    use. ``random_seeds`` > 1 reports the random baseline's metrics as a mean over that many seeds.
    """
    config = as_config(cfg)
    methods = methods or [config.sample.method]
    smoothing, dup = config.sample.align_smoothing, config.sample.dup_threshold
    skipped: dict[str, str] = {}
    skipped_seeds: dict[str, str] = {}
    resources = resources_or_new(resources)
    with open_store(store) as store:
        want_vectors = any(m in NEEDS_EMBEDDINGS for m in methods) or (
            "tags" in methods and tags_uses_embeddings(config))
        try:
            problem, ids, info = load_problem(
                store, config, tree_version, target=[] if target is None else target,
                embeddings=want_vectors, resources=resources)
        except EmbeddingUnavailable as exc:
            # A comparison still runs without embeddings, and TAGS without its embedding
            # terms; a single requested baseline that needs them does not.
            if len(methods) == 1 and methods[0] in NEEDS_EMBEDDINGS:
                raise
            if "tags" in methods:
                skipped["tags (embedding terms)"] = f"centrality and node kernel off: {exc}"
            skipped |= {m: str(exc) for m in methods if m in NEEDS_EMBEDDINGS}
            methods = [m for m in methods if m not in NEEDS_EMBEDDINGS]
            problem, ids, info = load_problem(
                store, config, tree_version, target=[] if target is None else target)
        k = parse_budget(config.sample.budget, problem.n)
        results: dict[str, dict] = {}
        pool = evaluate(problem, np.arange(problem.n), smoothing=smoothing,
                        near_duplicates=False)
        for method in methods:
            start = time.perf_counter()
            sel = make_selector(method, **selector_params(config, method)).fit(problem, k)
            seconds = time.perf_counter() - start
            store.write_selection(run_id, method, [ids[i] for i in sel.selected_], sel.gains_)
            metrics = evaluate(problem, sel.selected_, smoothing=smoothing, dup_threshold=dup)
            draws = draws_for(method, problem.n, k, random_seeds)
            if draws > 1:  # seeds from the configured one on: the stored selection is draw 0
                runs = [metrics] + [
                    evaluate(problem, make_selector(method, **selector_params(
                        config, method, config.sample.seed + s)).fit(problem, k).selected_,
                        smoothing=smoothing, dup_threshold=dup) for s in range(1, draws)]
                metrics = {m: float(np.mean([r[m] for r in runs])) for m in runs[0]}
                metrics["seeds"] = float(draws)
            elif method == "kmeans" and random_seeds > 1:
                skipped_seeds = {"kmeans": f"one draw (seed {config.sample.seed}): "
                                 f"{random_seeds} would be {random_seeds} k-means runs of "
                                 f"k = {k:,} on {problem.n:,} rows"}
            metrics["seconds"] = round(seconds, 3)
            store.write_selection_metrics(run_id, method, metrics)
            results[method] = metrics
    kl_before = pool_kl(problem, smoothing)
    main = results[methods[0]]
    if kl_before is not None:  # the pool on the level the selections are aligned and judged on
        pool |= pool_on_level(problem, int(main["align_level"]), smoothing)
    line = (f"selected {int(main['selected']):,} of {problem.n:,} with {methods[0]}: leaf "
            f"coverage {main['leaf_coverage']:.3f} (pool {pool['leaf_coverage']:.3f})")
    if kl_before is not None:
        line += ", " + kl_phrase(problem, pool, main, kl_before)
    if "length_ratio" in main:
        line += f", mean instruction length {main['length_ratio']:.2f}x the pool's"
        if "target_length_ratio" in info:
            line += f" (the target's: {info['target_length_ratio']:.2f}x)"
    return {"table": "selections", "run_id": run_id, "tree_version": problem.tree.version,
            "pool": problem.n, "budget": config.sample.budget, "selected": int(main["selected"]),
            "methods": results, "skipped": skipped, "single_draws": skipped_seeds,
            "aligned": kl_before is not None and config.sample.align != "none",
            "align": config.sample.align if kl_before is not None else "none",
            "kl_before": kl_before, "kl_after": main.get("kl_target"),
            "align_level": None if kl_before is None else int(main["align_level"]),
            "kl_before_aligned": pool.get("kl_target_aligned"),
            "kl_after_aligned": main.get("kl_target_aligned"), "pool_metrics": pool,
            "line": line} | info


def pool_on_level(problem: SelectionProblem, level: int, smoothing: float) -> dict:
    """The pool's KL to the target on ``level``, the level a selection of the budget's size is
    aligned on: the pool evaluated as a selection of everything sits on the leaves, and a
    table that sets one beside the other would compare two different levels."""
    return {"align_level": float(level),
            "kl_target_aligned": level_kl(problem.tree, problem.target_mass, problem.leaf_dist,
                                          None, level, smoothing)}


def kl_phrase(problem: SelectionProblem, pool: dict, main: dict, kl_leaves: float) -> str:
    """'KL to target before -> after': on the level the budget is aligned on, and on the leaves
    when that is a level above them. A 13-instance selection cannot reach most of a target's
    leaves, so the leaf figure barely moves even when the topics match (docs/sample.md)."""
    level = int(main["align_level"])
    if level == 0:
        return f"KL to target {kl_leaves:.3f} -> {main['kl_target']:.3f}"
    nodes = len(problem.tree.nodes_at(level))
    return (f"KL to target {pool['kl_target_aligned']:.3f} -> {main['kl_target_aligned']:.3f} "
            f"on level {level} ({nodes:,} nodes, the level aligned at this budget; leaves "
            f"{kl_leaves:.3f} -> {main['kl_target']:.3f})")


def ensure_target(store, cfg, path: str, tree_version: str | None = None, *,
                  resources: Resources | None = None) -> dict:
    """Make the target sample at ``path`` usable for alignment on the tree: ingest it (role
    target) if the store has not seen it, tag what is untagged with the configured tagger, and
    ground it on ``tree_version`` (the latest when None) when it has no grounding there. Each
    step runs only when needed; returns {names, ingested, annotated, grounded, lines}."""
    from pathlib import Path

    from tagtree.io import hf
    from tagtree.io.annotator import annotate_store, tagger_fingerprint_for
    from tagtree.io.ingest import dataset_name, ingest_files
    from tagtree.stages.ground import ground_in

    config = as_config(cfg)
    resources = resources_or_new(resources)
    target = Path(path)
    candidates = [target.name, dataset_name(str(target))]
    if hf.is_hf_input(target):
        candidates.insert(0, hf.dataset_name(target, None))
    out = {"ingested": 0, "annotated": 0, "grounded": 0, "lines": []}
    with open_store(store) as store:
        version = tree_version or store.latest_tree_version()
        if version is None:
            raise TagtreeError("no knowledge tree in the store (run `tagtree curate` or build one)")
        known = store.target_datasets()
        names = [n for n in candidates if n in known][:1]
        if not names:
            if not target.exists():
                raise TagtreeError(f"target sample {target} is neither in the store nor a file")
            summary = ingest_files(store, [str(target)], role="target",
                                   batch_rows=config.ingest.batch_rows,
                                   workers=config.ingest.workers,
                                   memory_limit=config.ingest.memory_limit)
            if summary.valid == 0:
                raise TagtreeError(f"target sample {target}: no usable record (see `tagtree "
                                   "stats` for the quarantine reasons)")
            names = [summary.files[0].dataset]
            out["ingested"] = summary.valid
            out["lines"].append(f"target: {summary.line()}")
        tids = store.target_ids(names)
        _, leaves = store.instance_leaf_matrix(version, tids)
        if int((np.diff(leaves.indptr) > 0).sum()) == len(tids):
            return out | {"names": names, "grounded": len(tids)}
        tree_tagger = store.tree_stats(version).get("tagger")
        wanted = tagger_fingerprint_for(config)
        if tree_tagger and wanted != tree_tagger:
            raise TagtreeError(
                f"the tree {version} was built from tagger {tree_tagger}, but the current "
                f"settings tag with {wanted}: pass the --llm-base-url/--llm-model (or "
                "annotate.tagger) the tree was built with to tag the target sample")
        embedder = resources.embedder_for(config)
        with resources.open_tagger(config) as tagger:
            tagged = annotate_store(store, tagger, page=config.annotate.batch_size)
        out["annotated"] = tagged.requested
        out["lines"].append(f"target: {tagged.line()}")
        grounded = ground_in(store, config, embedder, version, tree_tagger)
        _, leaves = store.instance_leaf_matrix(version, tids)
        out["grounded"] = int((np.diff(leaves.indptr) > 0).sum())
        out["lines"].append(f"target: grounded {out['grounded']:,} of {len(tids):,} target "
                            f"instances on tree {version} ({grounded['new_tags']:,} new tags)")
    return out | {"names": names}


def comparison_notes(store, run_id: str, summary: dict) -> list[str]:
    """Why methods print the same figures: selections that are identical, and quality ranking
    by richness alone when no judge scores exist (quality, deita and instag then all order by
    the tree's richness, so they tend to pick alike)."""
    notes = []
    with open_store(store) as store:
        sets = store.selection_sets(run_id)
        judged = store.judged_scores(summary["tree_version"])
    groups: dict[frozenset, list[str]] = {}
    for method in summary["methods"]:
        if method in sets and "seeds" not in summary["methods"][method]:  # not a mean
            groups.setdefault(sets[method], []).append(method)
    for members, methods in groups.items():
        if len(methods) > 1:
            why = ""
            if {"deita", "quality"} <= set(methods):
                # DEITA takes q(x) best first too, skipping near-copies of what it took
                why = ("; deita ranks by the same q(x) as quality and its similarity filter "
                       "(cosine >= sample.deita_threshold) passed over none of quality's picks")
            notes.append(f"{', '.join(methods)} selected the same {len(members):,} instances, "
                         f"so their rows are identical{why}")
    for method, why in summary.get("single_draws", {}).items():
        notes.append(f"{method} is {why}, so its figures are one draw's, not a mean")
    if not judged and any(m in summary["methods"] for m in ("quality", "deita", "instag")):
        notes.append("no judge scores: quality q(x) is the tree richness alone, so 'quality' "
                     "ranks by richness, as do deita's score and instag's tie-break (run "
                     "`tagtree score --judge` to separate them)")
    return notes


# Metrics that count things (a level index too): whole numbers stay ints in json/csv.
COUNT_METRICS = frozenset({"selected", "same_leaves", "near_duplicates", "seeds", "align_level"})


def _metric(name: str, value):
    if value is None:
        return None
    value = round(value, 4)
    return int(value) if name in COUNT_METRICS and float(value).is_integer() else value


def metrics_rows(summary: dict) -> list[dict]:
    """One row for the whole pool (before selection), then one per method."""
    rows = [("pool (before)", summary["pool_metrics"])] + list(summary["methods"].items())
    return [{"method": m} | {k: _metric(k, v) for k, v in metrics.items()}
            for m, metrics in rows]


def sample(store, *, config=None, resources: Resources | None = None,
           tree_version: str | None = None, run_id: str | None = None,
           methods: list[str] | None = None, target: list[str] | None = None,
           random_seeds: int = 1) -> SampleResult:
    """Select ``sample.budget`` of the pool with ``sample.method`` (or each of ``methods``) on
    ``tree_version`` (the latest when None); store ``selections`` and ``selection_metrics``
    under ``run_id`` (a new run, recorded in ``runs``, when None). ``target``: the target
    datasets to align to (None: every stored target sample)."""
    config = as_config(config)
    with open_store(store) as store:
        if run_id is not None:
            return SampleResult.of(run_sample(store, config, tree_version, run_id,
                                              methods=methods, target=target,
                                              random_seeds=random_seeds, resources=resources))
        run_id = new_run_id("sample")
        store.start_run(run_id, "sample", config.model_dump())
        try:
            summary = run_sample(store, config, tree_version, run_id, methods=methods,
                                 target=target, random_seeds=random_seeds, resources=resources)
        except BaseException:
            store.finish_run(run_id, "failed", metrics={})
            raise
        store.finish_run(run_id, "completed", metrics={"sample": summary})
    return SampleResult.of(summary)


def new_run_id(kind: str) -> str:
    import uuid

    return f"{kind}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
