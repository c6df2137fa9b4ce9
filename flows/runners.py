"""Task runner factory (orchestration): ``runner.runner`` thread|dask|ray + ``runner.address``.

``thread`` runs tasks in a thread pool in the flow's process. ``dask``/``ray`` start a local
cluster of ``runner.workers`` workers, or join an existing cluster at ``runner.address``
(``tcp://scheduler:8786`` for Dask, ``ray://head:10001`` for Ray). Only tasks that write Parquet
shards run in parallel on a cluster; one task merges them into DuckDB (a single writer).
"""

from __future__ import annotations

import os
from typing import Any

from prefect.task_runners import TaskRunner

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
        # Processes, one thread each: CPU-bound shards are not held back by the GIL. Each
        # worker's native libraries (ONNX Runtime, BLAS) get the worker's share of the cores,
        # not all of them: n workers x all cores threads oversubscribe the machine.
        share = str(worker_threads(workers))
        return DaskTaskRunner(cluster_kwargs={
            "n_workers": workers, "threads_per_worker": 1, "processes": True,
            "dashboard_address": None,
            "env": {"TAGTREE_WORKER_THREADS": share, "OMP_NUM_THREADS": share,
                    "OPENBLAS_NUM_THREADS": share, "MKL_NUM_THREADS": share}})
    if runner == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError:
            raise TagtreeError("runner 'ray' needs prefect-ray: pip install 'tagtree[ray]'") \
                from None
        if address:
            return RayTaskRunner(address=address)
        share = str(worker_threads(workers))
        return RayTaskRunner(init_kwargs={
            "num_cpus": workers, "include_dashboard": False,
            "runtime_env": {"env_vars": {"TAGTREE_WORKER_THREADS": share,
                                         "OMP_NUM_THREADS": share}}})
    raise TagtreeError(f"unknown runner {runner!r}: expected thread, dask or ray")


def with_runner(flow_obj, runner_cfg: dict[str, Any] | Any):
    """``flow_obj`` set to run its tasks on the configured runner (a RunnerConfig or its dict)."""
    cfg = runner_cfg if isinstance(runner_cfg, dict) else runner_cfg.model_dump()
    return flow_obj.with_options(task_runner=make_task_runner(
        cfg.get("runner", "thread"), cfg.get("address"), int(cfg.get("workers", 2))))


def worker_threads(workers: int) -> int:
    """Threads one of ``workers`` local cluster workers may use: its share of the cores."""
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


class ConfiguredTaskRunner(TaskRunner):
    """The task runner ``runner.runner`` names, chosen when a run starts rather than when the
    flow is defined: a deployment of a flow runs on what its recipe, environment
    (``TAGTREE_RUNNER_RUNNER=dask``) or ``overrides`` parameter says. Everything is handed to the
    chosen runner (``inner``)."""

    def __init__(self):
        self.inner: TaskRunner | None = None
        super().__init__()

    def duplicate(self):
        return type(self)()

    def _choose(self) -> TaskRunner:
        from prefect.runtime import flow_run

        from tagtree.config import load_config

        params: dict = {}
        try:  # a deployment run: its parameters (config_path, overrides) count too
            params = dict(flow_run.parameters or {})
        except Exception:  # noqa: BLE001 - no run or no API: the environment and recipe decide
            params = {}
        overrides = {k: v for k, v in (params.get("overrides") or {}).items()
                     if k.startswith("runner.")}
        cfg, _ = load_config(params.get("config_path"), overrides)
        r = cfg.runner
        return make_task_runner(r.runner, r.address, r.workers)

    def __enter__(self):
        super().__enter__()
        self.inner = self._choose()
        self.inner.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            if self.inner is not None:
                self.inner.__exit__(*exc)
        finally:
            super().__exit__(*exc)

    def submit(self, task, parameters, wait_for=None, dependencies=None):
        return self.inner.submit(task, parameters, wait_for=wait_for, dependencies=dependencies)

    def map(self, task, parameters, wait_for=None):
        return self.inner.map(task, parameters, wait_for=wait_for)

    def cancel_all(self) -> None:
        if self.inner is not None and hasattr(self.inner, "cancel_all"):
            self.inner.cancel_all()


def effective_runner(task_runner) -> Any:
    """The runner that really runs the tasks (a ConfiguredTaskRunner's choice)."""
    return getattr(task_runner, "inner", None) or task_runner
