"""Store queries of the annotate stage: instances -> annotations, taggers, batch_jobs."""

from __future__ import annotations

import orjson
import pyarrow as pa

_ANNOTATION_SCHEMA = pa.schema([
    ("instance_id", pa.string()), ("tagger", pa.string()), ("tags", pa.list_(pa.string())),
    ("status", pa.string()), ("error", pa.string()), ("attempts", pa.int32()),
    ("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()),
])


class AnnotateQueries:
    def register_tagger(self, fingerprint: str, description: dict) -> None:
        self.rows("INSERT OR REPLACE INTO taggers (tagger, description) VALUES (?, ?)",
                  [fingerprint, orjson.dumps(description).decode()])

    def annotation_counts(self, tagger: str) -> dict[str, int]:
        """Instances in the store, and how many have an ok / failed annotation by ``tagger``."""
        total, ok, failed = self.rows(
            "SELECT count(*), count(*) FILTER (a.status = 'ok'), "
            "count(*) FILTER (a.status = 'failed') FROM instances i "
            "LEFT JOIN annotations a ON a.instance_id = i.id AND a.tagger = ?", [tagger])[0]
        return {"instances": total, "ok": ok, "failed": failed, "pending": total - ok}

    def pending_page(self, tagger: str, after: str, limit: int) -> list[tuple]:
        """Next ``limit`` instances (by id, after ``after``) lacking an ok annotation:
        (id, instruction, response, system). Keyset paging, so rows written meanwhile are
        never re-read in the same run."""
        return self.rows(
            "SELECT i.id, i.instruction, i.response, coalesce(i.system, '') FROM instances i "
            "LEFT JOIN annotations a ON a.instance_id = i.id AND a.tagger = ? "
            "WHERE (a.status IS NULL OR a.status <> 'ok') AND i.id > ? ORDER BY i.id LIMIT ?",
            [tagger, after, limit])

    def pending_digest(self, tagger: str) -> str:
        """Cache key of the annotate stage: every instance id, plus the instances whose last
        attempt failed (with their attempt counts). A finished, fully-ok run leaves the digest
        it started from unchanged, so an identical re-run is a cache hit; a new instance or a
        failure to retry changes it. (A killed run stored no result, so its key misses.)"""
        value = self.scalar(
            "SELECT (SELECT coalesce(bit_xor(hash(id)), 0)::VARCHAR || ':' || count(*)::VARCHAR "
            "        FROM instances) || '/' || "
            "       (SELECT coalesce(bit_xor(hash(instance_id || ':' || attempts)), 0)::VARCHAR "
            "        || ':' || count(*)::VARCHAR FROM annotations "
            "        WHERE tagger = ? AND status NOT IN ('ok', 'submitted'))", [tagger])
        return str(value)

    def annotations_digest(self, tagger: str | None) -> str:
        """Content hash of the usable annotations (of one tagger, or all): the input of the tree
        and grounding stages, so their cache keys change exactly when the tags do."""
        value = self.scalar(
            "SELECT coalesce(bit_xor(hash(tagger || ':' || instance_id || ':' || tags::VARCHAR)),"
            " 0)::VARCHAR || ':' || count(*)::VARCHAR FROM annotations "
            "WHERE status = 'ok' AND (? IS NULL OR tagger = ?)", [tagger, tagger])
        return str(value)

    def write_annotations(self, tagger: str, results) -> None:
        """Upsert results (``TagResult``s) keyed by (instance, tagger): an ok row replaces a failed
        one; attempts and tokens accumulate across runs (they are what was spent)."""
        if not results:
            return
        table = pa.Table.from_pylist([
            {"instance_id": r.instance_id, "tagger": tagger, "tags": r.tags, "status": r.status,
             "error": r.error, "attempts": r.attempts, "prompt_tokens": r.prompt_tokens,
             "completion_tokens": r.completion_tokens} for r in results],
            schema=_ANNOTATION_SCHEMA)
        with self._lock:
            self.con.register("_annotations_in", table)
            try:
                self.run(
                    "INSERT INTO annotations (instance_id, tagger, tags, status, error, attempts, "
                    "prompt_tokens, completion_tokens) SELECT * FROM _annotations_in "
                    "ON CONFLICT (instance_id, tagger) DO UPDATE SET tags = excluded.tags, "
                    "status = excluded.status, error = excluded.error, "
                    "attempts = annotations.attempts + excluded.attempts, "
                    "prompt_tokens = annotations.prompt_tokens + excluded.prompt_tokens, "
                    "completion_tokens = annotations.completion_tokens "
                    "+ excluded.completion_tokens, "
                    "updated_at = now()")
            finally:
                self.con.unregister("_annotations_in")

    def annotations_of(self, tagger: str, status: str | None = "ok") -> list[tuple]:
        """(instance_id, tags, status, error) of ``tagger``, by instance id."""
        return self.rows(
            "SELECT instance_id, tags, status, error FROM annotations WHERE tagger = ? "
            "AND (? IS NULL OR status = ?) ORDER BY instance_id", [tagger, status, status])

    def tagged_examples(self, tagger: str, n: int) -> list[tuple]:
        """(instruction, tags) of ``n`` ok annotations, by instance id."""
        return self.rows(
            "SELECT i.instruction, a.tags FROM annotations a JOIN instances i "
            "ON i.id = a.instance_id WHERE a.tagger = ? AND a.status = 'ok' ORDER BY i.id LIMIT ?",
            [tagger, n])

    def annotation_stats(self, price_in_per_mtok: float = 0.0, price_out_per_mtok: float = 0.0,
                         batch_price_share: float = 0.5) -> list[dict]:
        """Per tagger: rows ok/failed, attempts, tokens, estimated cost (USD), top failures.
        Tokens of Batch API results (``batch_jobs``) cost ``batch_price_share`` of the price."""
        out = []
        batch = dict((t, (p, c)) for t, p, c in self.batch_tokens())
        for tagger, ok, failed, attempts, p_tok, c_tok, avg_tags in self.rows(
                "SELECT tagger, count(*) FILTER (status = 'ok'), "
                "count(*) FILTER (status = 'failed'), sum(attempts), sum(prompt_tokens), "
                "sum(completion_tokens), avg(len(tags)) FILTER (status = 'ok') "
                "FROM annotations GROUP BY tagger ORDER BY tagger"):
            reasons = self.rows(
                "SELECT split_part(error, ':', 1), count(*) FROM annotations "
                "WHERE tagger = ? AND status = 'failed' GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
                [tagger])
            b_in, b_out = batch.get(tagger, (0, 0))
            b_in, b_out = min(b_in, p_tok), min(b_out, c_tok)
            cost = token_cost(p_tok, c_tok, price_in_per_mtok, price_out_per_mtok,
                              b_in, b_out, batch_price_share)
            out.append({"tagger": tagger, "ok": ok, "failed": failed, "attempts": int(attempts),
                        "prompt_tokens": int(p_tok), "completion_tokens": int(c_tok),
                        "batch_prompt_tokens": int(b_in), "batch_completion_tokens": int(b_out),
                        "avg_tags": round(avg_tags or 0.0, 2), "cost_usd": round(cost, 4),
                        "failures": dict(reasons)})
        return out

    def batch_tokens(self) -> list[tuple]:
        """(tagger, prompt tokens, completion tokens) of loaded Batch API results."""
        return self.rows("SELECT tagger, sum(prompt_tokens), sum(completion_tokens) "
                         "FROM batch_jobs GROUP BY tagger ORDER BY tagger")

    # -- batch mode ------------------------------------------------------------------------------
    def save_batch_job(self, batch_id: str, tagger: str, status: str, input_file_id: str | None,
                       output_file_id: str | None, n_requests: int, prompt_tokens: int = 0,
                       completion_tokens: int = 0) -> None:
        self.rows(
            "INSERT INTO batch_jobs (batch_id, tagger, status, input_file_id, output_file_id, "
            "n_requests, updated_at, prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?, ?, "
            "current_timestamp, ?, ?) "
            "ON CONFLICT (batch_id) DO UPDATE SET status = excluded.status, "
            "output_file_id = excluded.output_file_id, updated_at = now(), "
            "prompt_tokens = greatest(batch_jobs.prompt_tokens, excluded.prompt_tokens), "
            "completion_tokens = greatest(batch_jobs.completion_tokens, "
            "excluded.completion_tokens)",
            [batch_id, tagger, status, input_file_id, output_file_id, n_requests, prompt_tokens,
             completion_tokens])

    def batch_job_ids(self, tagger: str) -> set[str]:
        return {r[0] for r in self.rows("SELECT batch_id FROM batch_jobs WHERE tagger = ?",
                                        [tagger])}

    def instances_in_batch(self, tagger: str, status: str, batch_id: str) -> list[str]:
        """The instances whose annotation row says ``status`` (submitted) in ``batch_id``."""
        return [r[0] for r in self.rows(
            "SELECT instance_id FROM annotations WHERE tagger = ? AND status = ? AND error = ?",
            [tagger, status, batch_id])]

    def instances_to_submit(self, tagger: str, submitted: str) -> list[tuple]:
        """(id, instruction, response, system) of instances without an ok or ``submitted``
        annotation by ``tagger``, in id order."""
        return self.rows(
            "SELECT i.id, i.instruction, i.response, coalesce(i.system, '') FROM instances i "
            "LEFT JOIN annotations a ON a.instance_id = i.id AND a.tagger = ? "
            "WHERE a.status IS NULL OR a.status NOT IN ('ok', ?) ORDER BY i.id",
            [tagger, submitted])

    def open_batch_jobs(self, tagger: str) -> list[tuple]:
        """(batch_id, status) of this tagger's batches not yet loaded into annotations."""
        return self.rows(
            "SELECT batch_id, status FROM batch_jobs WHERE tagger = ? AND status NOT IN "
            "('loaded', 'failed', 'expired', 'cancelled') ORDER BY created_at", [tagger])


def token_cost(prompt: float, completion: float, price_in: float, price_out: float,
               batch_prompt: float = 0, batch_completion: float = 0,
               batch_share: float = 0.5) -> float:
    """USD for the tokens (prices per 1M); the batch part of them at ``batch_share`` of it."""
    online = (prompt - batch_prompt) * price_in + (completion - batch_completion) * price_out
    batched = (batch_prompt * price_in + batch_completion * price_out) * batch_share
    return (online + batched) / 1e6
