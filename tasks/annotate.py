"""Annotate task: instances -> annotations (tags per instance, cached by tagger fingerprint)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext

from tagtree.config import Config
from tagtree.io.annotate_shards import export_pending as export_partitions
from tagtree.io.annotate_shards import load_results, tag_partition
from tagtree.io.annotator import (
    AnnotateSummary,
    open_tagger,
    tagger_fingerprint_for,
    uses_llm,
)
from tagtree.io.store import Store
from tagtree.stages.annotate import run_annotate
from tasks.policies import LLM_TAG, TRANSIENT_RETRIES, artifact_key, stage_cache_policy

ALGORITHM_VERSION = "annotate-1"


class Progress:
    """A long stage's progress where a user looks: a progress artifact whose description says
    done / total, rate and ETA (updated at most every 2 s), and an INFO log line with the same
    figures every ``log_every_s`` (the run's Logs tab). Outside a task run (task.fn in tests)
    there is no API: only the figures are kept."""

    def __init__(self, verb: str, key: str, log_every_s: float = 30.0, slow_hint: str = "",
                 slow_after_s: float = 1800.0):
        self.verb, self.log_every_s = verb, log_every_s
        # Said once, as a warning, when the first ETA exceeds slow_after_s: what would be faster.
        self.slow_hint, self.slow_after_s = slow_hint, slow_after_s
        self.started = time.monotonic()
        self.last_update = self.last_log = self.started
        self.done = self.total = 0
        self.artifact = (create_progress_artifact(progress=0.0, key=key,
                                                  description=f"{verb} 0 instances so far")
                         if TaskRunContext.get() else None)

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def seconds_left(self) -> float:
        rate = self.rate()
        return max(self.total - self.done, 0) / rate if rate > 0 else 0.0

    def text(self) -> str:
        left = self.seconds_left()
        eta = f", ETA {_clock(left)}" if left else ""
        return (f"{self.verb} {self.done:,} of {self.total:,} instances "
                f"({100.0 * self.done / max(self.total, 1):.0f}%, {self.rate():.1f}/s{eta})")

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if self.artifact and (now - self.last_update >= 2.0 or done == total):
            self.last_update = now  # a few API calls per run, not one per flush
            update_progress_artifact(self.artifact, 100.0 * done / max(total, 1),
                                     description=self.text())
        if TaskRunContext.get() and now - self.last_log >= self.log_every_s and done < total:
            self.last_log = now
            from prefect import get_run_logger

            get_run_logger().info(self.text())
            left = self.seconds_left()
            if self.slow_hint and left > self.slow_after_s:
                get_run_logger().warning(f"{self.verb}: {_clock(left)} to go; {self.slow_hint}")
                self.slow_hint = ""

    def finish(self) -> None:
        if self.artifact:
            update_progress_artifact(self.artifact, 100.0, description=self.text())


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


@dataclass
class PendingAnnotations(CachePolicy):
    """Key part = tagger fingerprint + digest of the instances still lacking an ok annotation
    (ids and attempts so far): the task's real input is the store's content, not its path, so a
    new instance or a failed row to retry changes the key; an unchanged store hits the cache."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str:
        cfg = Config.model_validate(inputs["cfg"])
        fingerprint = tagger_fingerprint_for(cfg)
        with Store(inputs["db"]) as store:
            return f"{fingerprint}:{store.pending_digest(fingerprint)}"


def offline_speed_hint(config: Config) -> str:
    """What to try when the offline default (keyphrase tagger on MiniLM) would take long: its
    speed is the model's, a few thousand word pieces a second on a small machine."""
    if uses_llm(config) or config.embed.backend != "local" or \
            config.annotate.phrase_embedder != "embed":
        return ""
    return ("the offline keyphrase tagger runs MiniLM over every text and its phrases "
            "(docs/annotate.md#offline-speed-issue-14); TAGTREE_EMBED_BACKEND=static "
            "(embed.backend = static) annotates ~30x faster, at a lower tree quality, "
            "or --llm-base-url tags through an endpoint")


@task(name="annotate", tags=[LLM_TAG], timeout_seconds=24 * 3600, persist_result=True,
      result_serializer="json",
      cache_policy=stage_cache_policy(ALGORITHM_VERSION) + PendingAnnotations(),
      **TRANSIENT_RETRIES)
def annotate(db: str, cfg: dict) -> dict:
    """Tag every pool and target instance lacking an ok annotation for the configured tagger.
    Returns counts (requested/ok/failed/cached), tokens, failure reasons and the fingerprint."""
    progress = Progress("annotated", artifact_key("annotate-progress", cfg),
                        slow_hint=offline_speed_hint(Config.model_validate(cfg)))
    summary = run_annotate(db, cfg, progress=progress)
    progress.finish()
    return summary


# -- on a Dask/Ray cluster, CPU-bound taggers run as shard tasks (see flows/annotate_stage.py) --
def shard_rows(pending: int, config: Config, per_worker: int = 2) -> int:
    """Rows per tag-shard: ``annotate.batch_size`` at most, and small enough that every worker
    gets ``per_worker`` shards (one shard for 1,500 pending rows kept a second worker idle)."""
    workers = max(config.runner.workers, 1)
    share = -(-max(pending, 1) // (workers * per_worker))
    return min(config.annotate.batch_size, max(32, share))

@task(name="export-pending", cache_policy=NO_CACHE, timeout_seconds=3600)
def export_pending(db: str, cfg: dict, out_dir: str) -> dict:
    """Write the instances lacking an ok annotation as Parquet partitions under ``out_dir``."""
    config = Config.model_validate(cfg)
    with Store(db) as store, open_tagger(config) as tagger:
        store.register_tagger(tagger.fingerprint, tagger.describe())
        counts = store.annotation_counts(tagger.fingerprint)
        parts = export_partitions(store, tagger.fingerprint, out_dir,
                                  shard_rows(counts["instances"] - counts["ok"], config))
    return {"tagger": tagger.fingerprint, "parts": parts, "instances": counts["instances"],
            "cached": counts["ok"]}


# No timeout: a shard runs in a cluster worker's thread, which Prefect cannot interrupt.
@task(name="tag-shard", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def tag_shard(path: str, cfg: dict) -> str:
    """Tag one partition on whichever worker runs this; returns the results' Parquet path."""
    with open_tagger(Config.model_validate(cfg)) as tagger:
        return tag_partition(tagger, path)


@task(name="load-annotations", cache_policy=NO_CACHE, timeout_seconds=3600)
def load_annotations(db: str, plan: dict, tagged: list[str], seconds: float = 0.0) -> dict:
    """The single writer: upsert the tagged partitions into ``annotations``."""
    with Store(db) as store:
        stats = load_results(store, plan["tagger"], tagged)
    stats.cached = plan["cached"]
    summary = AnnotateSummary.of(plan["tagger"], plan["instances"], stats, seconds)
    return summary.to_dict() | {"table": "annotations", "line": summary.line()}
