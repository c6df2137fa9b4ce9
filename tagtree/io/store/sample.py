"""Store queries of the sample stage: who is in the pool / target, selections,
selection_metrics."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


class SampleQueries:
    # -- who is in the pool / target -----------------------------------------------------
    def target_ids(self, datasets: list[str] | None = None) -> list[str]:
        """Instances of the target-domain sample: datasets with role 'target' (or ``datasets``)."""
        sql = ("SELECT DISTINCT s.instance_id FROM instance_sources s JOIN datasets d "
               "ON d.name = s.dataset WHERE d.role = 'target'")
        params: list = []
        if datasets:
            sql += f" AND d.name IN ({', '.join('?' for _ in datasets)})"
            params = list(datasets)
        return [r[0] for r in self.rows(sql + " ORDER BY 1", params)]

    def target_datasets(self) -> list[str]:
        return [r[0] for r in self.rows(
            "SELECT name FROM datasets WHERE role = 'target' ORDER BY 1")]

    # -- texts -----------------------------------------------------------------------------
    def instance_ids_present(self, ids: list[str]) -> list[str]:
        """The ``ids`` that have a row in ``instances``, in ``ids`` order."""
        t = self._aligned("SELECT w.instance_id FROM _ids w JOIN instances i "
                          "ON i.id = w.instance_id ORDER BY w.pos", ids, [])
        return t.column("instance_id").to_pylist()

    def instance_texts(self, ids: list[str]) -> tuple[list[str], list[str]]:
        """(instructions, responses) in ``ids`` order."""
        t = self._aligned("SELECT i.instruction, i.response FROM _ids w JOIN instances i "
                          "ON i.id = w.instance_id ORDER BY w.pos", ids, [])
        return t.column("instruction").to_pylist(), t.column("response").to_pylist()

    def instruction_lengths(self, ids: list[str]) -> np.ndarray:
        """Characters of each instruction in ``ids`` order (counted in DuckDB: the texts
        themselves are not loaded)."""
        t = self._aligned("SELECT coalesce(length(i.instruction), 0) AS n FROM _ids w "
                          "LEFT JOIN instances i ON i.id = w.instance_id ORDER BY w.pos", ids, [])
        return t.column("n").to_numpy().astype(np.float64)

    # -- selections ------------------------------------------------------------------------
    def write_selection(self, run_id: str, method: str, ids: list[str], gains) -> int:
        gains = np.asarray(gains, dtype=np.float64)
        table = pa.table({
            "run_id": pa.array([run_id] * len(ids), pa.string()),
            "method": pa.array([method] * len(ids), pa.string()),
            "instance_id": pa.array(ids, pa.string()),
            "rank": pa.array(np.arange(1, len(ids) + 1, dtype=np.int32)),
            "gain": pa.array(gains.astype(np.float32), mask=np.isnan(gains))})
        with self.transaction():
            self.run("DELETE FROM selections WHERE run_id = ? AND method = ?", [run_id, method])
            if len(ids):
                self.insert_arrow("selections", table)
        return len(ids)

    def write_selection_metrics(self, run_id: str, method: str, metrics: dict) -> None:
        names = [k for k, v in metrics.items() if isinstance(v, (int, float))]
        table = pa.table({"run_id": [run_id] * len(names), "method": [method] * len(names),
                          "metric": names, "value": [float(metrics[k]) for k in names]})
        with self.transaction():
            self.run("DELETE FROM selection_metrics WHERE run_id = ? AND method = ?",
                     [run_id, method])
            if names:
                self.insert_arrow("selection_metrics", table)

    def selection_metrics(self, run_id: str) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for method, metric, value in self.rows(
                "SELECT method, metric, value FROM selection_metrics WHERE run_id = ? "
                "ORDER BY method, metric", [run_id]):
            out.setdefault(method, {})[metric] = value
        return out

    def selection_tree_version(self, run_id: str, method: str) -> str | None:
        """The newest built tree under which every instance of the selection is scored."""
        return self.scalar(
            "SELECT s.tree_version FROM scores s JOIN selections sel "
            "ON sel.instance_id = s.instance_id JOIN trees t ON t.tree_version = s.tree_version "
            "WHERE sel.run_id = ? AND sel.method = ? GROUP BY s.tree_version "
            "HAVING count(*) = (SELECT count(*) FROM selections WHERE run_id = ? AND method = ?) "
            "ORDER BY max(t.created_at) DESC, s.tree_version DESC LIMIT 1",
            [run_id, method, run_id, method])

    def selection_methods(self, run_id: str) -> list[str]:
        return [r[0] for r in self.rows(
            "SELECT DISTINCT method FROM selections WHERE run_id = ? ORDER BY 1", [run_id])]

    def selection_sets(self, run_id: str) -> dict[str, frozenset[str]]:
        """Method -> the set of instance ids it selected in ``run_id``."""
        out: dict[str, set[str]] = {}
        for method, iid in self.rows("SELECT method, instance_id FROM selections "
                                     "WHERE run_id = ?", [run_id]):
            out.setdefault(method, set()).add(iid)
        return {m: frozenset(v) for m, v in out.items()}

    def latest_selection_run(self) -> str | None:
        """The run whose selection was written last (runs table first, else any)."""
        return self.scalar(
            "SELECT s.run_id FROM selections s LEFT JOIN runs r ON r.run_id = s.run_id "
            "GROUP BY s.run_id ORDER BY max(r.started_at) DESC NULLS LAST, s.run_id DESC LIMIT 1")

    # -- exports ---------------------------------------------------------------------------
