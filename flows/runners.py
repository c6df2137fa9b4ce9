"""Task runner factory (orchestration): ``runner.runner`` thread|dask|ray + ``runner.address``.

``thread`` runs tasks in a thread pool in the flow's process. ``dask``/``ray`` start a local
cluster of ``runner.workers`` workers, or join an existing cluster at ``runner.address``
(``tcp://scheduler:8786`` for Dask, ``ray://head:10001`` for Ray). Only tasks that write Parquet
shards run in parallel on a cluster; one task merges them into DuckDB (a single writer).
"""

from __future__ import annotations

from typing import Any

from tagtree.errors import TagtreeError


def make_task_runner(runner: str = "thread", address: str | None = None, workers: int = 2):
    if runner == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    if runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise TagtreeError("runner 'dask' needs prefect-dask: pip install 'tagtree[dask]'") \
                from None
        if address:
            return DaskTaskRunner(address=address)
        # Processes, one thread each: CPU-bound shards are not held back by the GIL.
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    if runner == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError:
            raise TagtreeError("runner 'ray' needs prefect-ray: pip install 'tagtree[ray]'") \
                from None
        if address:
            return RayTaskRunner(address=address)
        return RayTaskRunner(init_kwargs={"num_cpus": workers, "include_dashboard": False})
    raise TagtreeError(f"unknown runner {runner!r}: expected thread, dask or ray")


def with_runner(flow_obj, runner_cfg: dict[str, Any] | Any):
    """``flow_obj`` set to run its tasks on the configured runner (a RunnerConfig or its dict)."""
    cfg = runner_cfg if isinstance(runner_cfg, dict) else runner_cfg.model_dump()
    return flow_obj.with_options(task_runner=make_task_runner(
        cfg.get("runner", "thread"), cfg.get("address"), int(cfg.get("workers", 2))))
