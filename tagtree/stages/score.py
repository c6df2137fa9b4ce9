"""Score stage: tree_nodes + instance_nodes (+ judgements) -> scores."""

from __future__ import annotations

import hashlib

import numpy as np

from tagtree.errors import TagtreeError
from tagtree.scoring import TreeScorer
from tagtree.stages.common import as_config, open_store
from tagtree.stages.resources import Resources, resources_or_new
from tagtree.stages.results import ScoreResult

ALGORITHM_VERSION = "score-1"


def run_score(store, cfg, tree_version: str | None = None, *,
              resources: Resources | None = None) -> dict:
    """Score the pool on a tree (the latest when None); judge first when ``score.judge``."""
    config = as_config(cfg)
    sc = config.score
    with open_store(store) as store:
        tree = store.load_tree(tree_version)
        ids = store.pool_ids()
        if not ids:
            raise TagtreeError("the pool is empty (run `tagtree ingest` first)")
        _, leaves = store.instance_leaf_matrix(tree.version, ids)
        ratings, judged = None, {}
        if sc.judge:
            from tagtree.io.judge import judge_instances

            # No endpoint configured: the offline model on a local server, as annotate does.
            with resources_or_new(resources).open_chat(config) as chat:
                judged = judge_instances(store, chat, ids, concurrency=sc.judge_concurrency,
                                         max_chars=sc.judge_max_chars)
            ratings = store.judge_ratings(judged["judge"], ids)
        scorer = TreeScorer(judge_weight=sc.judge_weight, richness_quantile=sc.richness_quantile,
                            quality_floor=sc.quality_floor).fit(tree, leaves, ratings)
        store.write_scores(tree.version, ids, scorer.richness_, scorer.judge_, scorer.quality_)
    summary = scorer.summary()
    digest = hashlib.sha256(np.round(scorer.quality_, 6).tobytes()).hexdigest()[:16]
    keep = ("mean", "std", "median", "collapsed")
    q = summary["quality"]
    line = (f"scored {len(ids):,} instances on tree {tree.version}: quality mean "
            f"{q.get('mean', 0):.3f}, std {q.get('std', 0):.3f}"
            + (" (COLLAPSED: every instance scores about the same)" if q["collapsed"] else "")
            + (f"; judged {summary['judged']:,}" if sc.judge else ""))
    return {"table": "scores", "tree_version": tree.version, "instances": len(ids),
            "grounded": int((np.diff(leaves.indptr) > 0).sum()), "judged": summary["judged"],
            "judge": judged, "quality_hash": digest,
            "richness": {s: summary["richness"].get(s) for s in keep},
            "quality": {s: summary["quality"].get(s) for s in keep}, "line": line}


def score(store, *, config=None, resources: Resources | None = None,
          tree_version: str | None = None) -> ScoreResult:
    """Write ``scores`` for every pool instance on ``tree_version`` (the latest when None):
    richness on the tree, the LLM judge's ratings when ``score.judge``, quality q(x)."""
    return ScoreResult.of(run_score(store, config, tree_version, resources=resources))
