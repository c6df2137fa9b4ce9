"""Is this flow run's task runner a cluster, and where do its shards wait."""

from __future__ import annotations

import uuid
from pathlib import Path

from prefect.context import FlowRunContext

_CLUSTER_RUNNERS = ("DaskTaskRunner", "RayTaskRunner")


def on_cluster() -> bool:
    """Whether the running flow's tasks go to a Dask/Ray cluster (not threads of this process):
    only then are CPU-heavy stages cut into shard tasks."""
    from flows.runners import effective_runner

    ctx = FlowRunContext.get()
    return (ctx is not None
            and type(effective_runner(ctx.task_runner)).__name__ in _CLUSTER_RUNNERS)


def new_shard_dir(cfg, db: str) -> str:
    """A fresh directory for one stage's shards under ``runner.shard_dir`` (default: next to
    the database), which every worker and the writer must reach."""
    root = Path(cfg.runner.shard_dir or Path(db).resolve().parent / ".tagtree-shards")
    return str(root / uuid.uuid4().hex)
