"""Score task: tree_nodes + instance_nodes (+ judgements) -> scores.

Cached on inputs (db, cfg, tree_version), the task source, an explicit algorithm version and a
fingerprint of the store tables the scores depend on: ``(db, cfg, tree_version)`` alone does not
change when instances are grounded onto an existing tree, and a stale cache would then be wrong.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from tagtree.config import Config
from tagtree.errors import TagtreeError
from tagtree.io.store import Store
from tagtree.scoring import TreeScorer
from tasks.policies import LLM_TAG, stage_cache_policy

ALGORITHM_VERSION = "score-1"

# Cheap order-free fingerprints (one scan each) of what a stage reads.
_FINGERPRINTS = {
    "datasets": "SELECT count(*), coalesce(bit_xor(hash(name, role)), 0) FROM datasets",
    "sources": "SELECT count(*), coalesce(bit_xor(hash(instance_id, dataset)), 0) "
               "FROM instance_sources",
    "grounding": "SELECT count(*), coalesce(bit_xor(hash(instance_id, node_id, weight)), 0) "
                 "FROM instance_nodes WHERE tree_version = $tv",
    "judgements": "SELECT count(*), coalesce(bit_xor(hash(instance_id, judge, rating)), 0) "
                  "FROM judgements WHERE status = 'ok'",
    "scores": "SELECT count(*), coalesce(bit_xor(hash(instance_id, quality)), 0) FROM scores "
              "WHERE tree_version = $tv",
    "embeddings": "SELECT count(*) FROM instance_embeddings",
}


def store_fingerprint(db: str, tree_version: str | None, parts: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    with Store(db, read_only=True) as store:
        tv = tree_version or store.latest_tree_version() or ""
        for name in parts:
            sql = _FINGERPRINTS[name]
            params = {"tv": tv} if "$tv" in sql else None
            h.update(repr((name, tv, store.rows(sql, params))).encode())
    return h.hexdigest()[:32]


@dataclass
class StoreContent(CachePolicy):
    """Cache key part: a fingerprint of the store tables ``parts`` (no key if unreadable)."""

    parts: tuple[str, ...] = field(default_factory=tuple)

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        try:
            return store_fingerprint(inputs["db"], inputs.get("tree_version"), self.parts)
        except Exception:  # noqa: BLE001 - a missing/locked db just means "do not cache"
            return None


def run_score(db: str, cfg: dict, tree_version: str | None = None) -> dict:
    """Score the pool on a tree (the latest when None); judge first when ``score.judge``."""
    config = Config.model_validate(cfg)
    sc = config.score
    with Store(db) as store:
        tree = store.load_tree(tree_version)
        ids = store.pool_ids()
        if not ids:
            raise TagtreeError("the pool is empty (run `tagtree ingest` first)")
        _, leaves = store.instance_leaf_matrix(tree.version, ids)
        ratings, judged = None, {}
        if sc.judge:
            from tagtree.io.chat import make_chat_model
            from tagtree.io.judge import judge_instances

            chat = make_chat_model(config)
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


@task(name="score", tags=[LLM_TAG], retries=1, retry_delay_seconds=10, timeout_seconds=6 * 3600,
      cache_policy=stage_cache_policy(ALGORITHM_VERSION)
      + StoreContent(parts=("datasets", "sources", "grounding", "judgements")),
      persist_result=True, result_serializer="json")
def score(db: str, cfg: dict, tree_version: str) -> dict:
    """Write ``scores`` for ``tree_version``; returns counts and the score distributions."""
    return run_score(db, cfg, tree_version)
