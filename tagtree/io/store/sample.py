"""Store queries of the score/sample/export stages: scores, judgements, instance_embeddings,
selections, selection_metrics, exports."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def _ids_table(ids: list[str]) -> pa.Table:
    return pa.table({"instance_id": pa.array(ids, pa.string()),
                     "pos": pa.array(np.arange(len(ids), dtype=np.int64))})


class SampleQueries:
    def _aligned(self, sql: str, ids: list[str], params: list) -> pa.Table:
        """Run ``sql`` joined to the wanted ids (registered as ``_ids``), ordered by position."""
        with self._lock:
            self.con.register("_ids", _ids_table(ids))
            try:
                return self.arrow(sql, params)
            finally:
                self.con.unregister("_ids")

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

    # -- judgements -----------------------------------------------------------------------
    def unjudged_ids(self, judge: str, ids: list[str]) -> list[str]:
        t = self._aligned("SELECT w.instance_id FROM _ids w LEFT JOIN judgements j "
                          "ON j.instance_id = w.instance_id AND j.judge = ? AND j.status = 'ok' "
                          "WHERE j.instance_id IS NULL ORDER BY w.pos", ids, [judge])
        return t.column("instance_id").to_pylist()

    def write_judgements(self, table: pa.Table) -> None:
        """Upsert ratings; tokens add up over attempts (a retried failure's cost stays counted)."""
        with self._lock:
            self.con.register("_judged", table)
            try:
                self.run(
                    "INSERT INTO judgements (instance_id, judge, rating, status, error, "
                    "prompt_tokens, completion_tokens) SELECT instance_id, judge, rating, status, "
                    "error, prompt_tokens, completion_tokens FROM _judged ON CONFLICT "
                    "(instance_id, judge) DO UPDATE SET rating = excluded.rating, "
                    "status = excluded.status, error = excluded.error, "
                    "prompt_tokens = judgements.prompt_tokens + excluded.prompt_tokens, "
                    "completion_tokens = judgements.completion_tokens + excluded.completion_tokens")
            finally:
                self.con.unregister("_judged")

    def judge_ratings(self, judge: str, ids: list[str]) -> np.ndarray:
        """Ratings in ``ids`` order, NaN where there is no usable judgement."""
        t = self._aligned("SELECT w.pos, j.rating FROM _ids w LEFT JOIN judgements j "
                          "ON j.instance_id = w.instance_id AND j.judge = ? AND j.status = 'ok' "
                          "ORDER BY w.pos", ids, [judge])
        return np.asarray(t.column("rating").to_numpy(zero_copy_only=False), dtype=np.float64)

    # -- scores ----------------------------------------------------------------------------
    def write_scores(self, tree_version: str, ids: list[str], richness, judge, quality) -> int:
        judge = np.asarray(judge, dtype=np.float64)
        table = pa.table({
            "tree_version": pa.array([tree_version] * len(ids), pa.string()),
            "instance_id": pa.array(ids, pa.string()),
            "richness": pa.array(np.asarray(richness, np.float32)),
            "judge": pa.array(judge.astype(np.float32), mask=np.isnan(judge)),
            "quality": pa.array(np.asarray(quality, np.float32))})
        with self.transaction():
            self.run("DELETE FROM scores WHERE tree_version = ?", [tree_version])
            self.insert_arrow("scores", table)
        return len(ids)

    def scored_count(self, tree_version: str) -> int:
        return self.scalar("SELECT count(*) FROM scores WHERE tree_version = ?", [tree_version])

    def quality_scores(self, tree_version: str, ids: list[str]) -> np.ndarray:
        """q(x) in ``ids`` order; NaN for instances not scored under ``tree_version``."""
        t = self._aligned("SELECT w.pos, s.quality FROM _ids w LEFT JOIN scores s "
                          "ON s.instance_id = w.instance_id AND s.tree_version = ? "
                          "ORDER BY w.pos", ids, [tree_version])
        return np.asarray(t.column("quality").to_numpy(zero_copy_only=False), dtype=np.float64)

    # -- instance embeddings ---------------------------------------------------------------
    def missing_instance_embeddings(self, embedder: str, ids: list[str]) -> list[str]:
        t = self._aligned("SELECT w.instance_id FROM _ids w LEFT JOIN instance_embeddings e "
                          "ON e.instance_id = w.instance_id AND e.embedder = ? "
                          "WHERE e.instance_id IS NULL ORDER BY w.pos", ids, [embedder])
        return t.column("instance_id").to_pylist()

    def write_instance_embeddings(self, embedder: str, ids: list[str], vectors: np.ndarray) -> int:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1] if vectors.ndim == 2 else 0
        offsets = pa.array(np.arange(0, vectors.size + 1, max(dim, 1), dtype=np.int32))
        table = pa.table({"instance_id": pa.array(ids, pa.string()),
                          "embedder": pa.array([embedder] * len(ids), pa.string()),
                          "vector": pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel()))})
        return self.insert_arrow("instance_embeddings", table)

    def instance_vectors(self, embedder: str, ids: list[str]) -> np.ndarray:
        """(len(ids) x d) float32 in ``ids`` order; every id must have been embedded."""
        t = self._aligned("SELECT w.pos, e.vector FROM _ids w JOIN instance_embeddings e "
                          "ON e.instance_id = w.instance_id AND e.embedder = ? ORDER BY w.pos",
                          ids, [embedder])
        if t.num_rows != len(ids):
            raise ValueError(f"{len(ids) - t.num_rows} instances have no '{embedder}' embedding")
        col = t.column("vector").combine_chunks()
        flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return flat.reshape(len(ids), -1) if len(ids) else np.zeros((0, 0), np.float32)

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

    def judged_scores(self, tree_version: str) -> int:
        """Scores on ``tree_version`` that include an LLM judge rating."""
        return self.scalar("SELECT count(*) FROM scores WHERE tree_version = ? AND judge IS NOT "
                           "NULL AND NOT isnan(judge)", [tree_version]) or 0

    def latest_selection_run(self) -> str | None:
        """The run whose selection was written last (runs table first, else any)."""
        return self.scalar(
            "SELECT s.run_id FROM selections s LEFT JOIN runs r ON r.run_id = s.run_id "
            "GROUP BY s.run_id ORDER BY max(r.started_at) DESC NULLS LAST, s.run_id DESC LIMIT 1")

    def selection_records(self, run_id: str, method: str) -> pa.Table:
        """The selected instances with their original records, in rank order."""
        return self.arrow(
            "SELECT s.rank, i.id, i.dataset, i.format, i.instruction, i.response, i.system, "
            "i.raw, i.source_file FROM selections s JOIN instances i ON i.id = s.instance_id "
            "WHERE s.run_id = ? AND s.method = ? ORDER BY s.rank", [run_id, method])

    # -- exports ---------------------------------------------------------------------------
    def write_export(self, run_id: str, uri: str, kind: str, rows: int, sha256: str) -> None:
        self.rows("INSERT OR REPLACE INTO exports (run_id, uri, kind, rows, sha256) "
                  "VALUES (?, ?, ?, ?, ?)", [run_id, uri, kind, rows, sha256])

    def exports(self, run_id: str) -> list[tuple]:
        return self.rows("SELECT uri, kind, rows, sha256 FROM exports WHERE run_id = ? "
                         "ORDER BY kind, uri", [run_id])
