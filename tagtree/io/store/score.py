"""Store queries of the score stage: scores, judgements."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


class ScoreQueries:
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

    def judged_scores(self, tree_version: str) -> int:
        """Scores on ``tree_version`` that include an LLM judge rating."""
        return self.scalar("SELECT count(*) FROM scores WHERE tree_version = ? AND judge IS NOT "
                           "NULL AND NOT isnan(judge)", [tree_version]) or 0
