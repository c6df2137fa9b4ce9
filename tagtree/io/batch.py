"""Annotate stage (I/O): instances -> annotations via the OpenAI Batch API, resumable by batch id.

Steps: adopt batches this tagger created but never recorded (a kill between "create" and "save"),
load finished batches recorded in ``batch_jobs``, then write the pending instances as request
JSONL (custom_id = instance id), upload it, create a batch, record it (status 'submitted' rows in
``annotations`` mark its instances so a re-run does not pay for them twice), poll, download and
load the results. Critic rounds need several turns per instance and are online-only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from tagtree.annotation import FAILED, OK, TagError, TagResult, TagStats, clean_tags, parse_tags
from tagtree.errors import TagtreeError
from tagtree.io.annotator import AnnotateSummary, LLMTagger

SUBMITTED = "submitted"
_DONE = {"completed", "failed", "expired", "cancelled"}


def _client(tagger: LLMTagger, cfg):
    import openai

    return openai.OpenAI(base_url=tagger.llm.base_url,
                         api_key=os.environ.get(cfg.llm.api_key_env) or "unused",
                         timeout=cfg.llm.timeout_s, max_retries=cfg.llm.max_retries)


def request_line(tagger: LLMTagger, instance_id: str, instruction: str, response: str,
                 system: str) -> dict:
    from tagtree.annotation import TagInput, truncate

    item, _ = truncate(TagInput(instance_id, instruction, response, system),
                       tagger.max_input_tokens, tagger.count_tokens)
    body = {"model": tagger.llm.model, "messages": tagger.prompt.render(**tagger._values(item)),
            "temperature": tagger.llm.temperature, "max_tokens": tagger.llm.max_tokens}
    if tagger.llm.structured:
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "tags", "schema": tagger.schema, "strict": True}}
    return {"custom_id": instance_id, "method": "POST", "url": "/v1/chat/completions",
            "body": body}


def result_of(tagger: LLMTagger, line: dict) -> TagResult:
    """One output (or error) line of a batch -> an ok/failed result."""
    iid = line.get("custom_id") or ""
    resp = line.get("response") or {}
    if line.get("error") or resp.get("status_code") != 200:
        err = line.get("error") or (resp.get("body") or {}).get("error") or {}
        reason = err.get("message") if isinstance(err, dict) else str(err)
        return TagResult(iid, FAILED, error=f"batch error: {reason or resp.get('status_code')}")
    body = resp.get("body") or {}
    usage = body.get("usage") or {}
    result = TagResult(iid, OK, prompt_tokens=usage.get("prompt_tokens", 0),
                       completion_tokens=usage.get("completion_tokens", 0))
    try:
        content = body["choices"][0]["message"]["content"]
        result.tags = clean_tags(parse_tags(content), tagger.min_tags, tagger.max_tags)
    except (KeyError, IndexError, TypeError) as exc:
        result.status, result.error = FAILED, f"malformed response: {exc!r}"
    except TagError as exc:
        result.status, result.error = FAILED, str(exc)
    return result


def _load(store, client, tagger: LLMTagger, batch, stats: TagStats) -> None:
    """Write a finished batch's results; instances it does not answer are marked failed."""
    fp = tagger.fingerprint
    results: dict[str, TagResult] = {}
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            for raw in client.files.content(file_id).read().decode("utf-8").splitlines():
                if raw.strip():
                    result = result_of(tagger, json.loads(raw))
                    results[result.instance_id] = result
    submitted = store.instances_in_batch(fp, SUBMITTED, batch.id)
    for iid in submitted:
        results.setdefault(iid, TagResult(iid, FAILED, error=f"batch {batch.status}: no result"))
    with store.transaction():
        store.write_annotations(fp, list(results.values()))
        store.save_batch_job(batch.id, fp, "loaded" if batch.status == "completed"
                             else batch.status, batch.input_file_id, batch.output_file_id,
                             len(results),
                             sum(r.prompt_tokens for r in results.values()),
                             sum(r.completion_tokens for r in results.values()))
    for result in results.values():
        stats.add(result)


def _wait(client, batch_id: str, poll_s: float, progress=None):
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in _DONE:
            return batch
        if progress and batch.request_counts:
            progress(batch.request_counts.completed, batch.request_counts.total)
        time.sleep(poll_s)


def annotate_batch(store, tagger, cfg, *, wait: bool = True, limit: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> AnnotateSummary:
    """Submit the pending instances (at most ``limit`` new requests) as batches of
    ``annotate.batch_max_requests``, load finished ones; see the module docstring."""
    if not isinstance(tagger, LLMTagger):
        raise TagtreeError("--mode batch needs an LLM endpoint (--llm-base-url/--llm-model)")
    if tagger.critic_rounds:
        raise TagtreeError("--mode batch does not run critic rounds: set annotate.critic_rounds=0")
    started = time.perf_counter()
    fp = tagger.fingerprint
    client = _client(tagger, cfg)
    store.register_tagger(fp, tagger.describe())
    counts = store.annotation_counts(fp)
    stats = TagStats(pending=counts["pending"], cached=counts["ok"])
    known = store.batch_job_ids(fp)
    for batch in client.batches.list(limit=100).data:  # adopt those created before a kill
        if (batch.metadata or {}).get("tagtree_tagger") == fp[:512] and batch.id not in known:
            store.save_batch_job(batch.id, fp, "adopted", batch.input_file_id, None, 0)
    for batch_id, _ in store.open_batch_jobs(fp):
        batch = (_wait(client, batch_id, cfg.annotate.batch_poll_s) if wait
                 else client.batches.retrieve(batch_id))
        if batch.status in _DONE:
            _load(store, client, tagger, batch, stats)
    if store.open_batch_jobs(fp) and not wait:
        return _summary(fp, counts, stats, started)
    rows = store.instances_to_submit(fp, SUBMITTED)
    if limit is not None:
        rows = rows[:max(limit, 0)]
    size = cfg.annotate.batch_max_requests
    batch_ids = []
    for start in range(0, len(rows), size):
        chunk = rows[start:start + size]
        data = "".join(json.dumps(request_line(tagger, *r)) + "\n" for r in chunk).encode()
        file = client.files.create(file=("tagtree-batch.jsonl", data), purpose="batch")
        batch = client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h",
            metadata={"tagtree_tagger": fp[:512]})
        with store.transaction():
            store.save_batch_job(batch.id, fp, batch.status, file.id, None, len(chunk))
            store.write_annotations(fp, [TagResult(r[0], SUBMITTED, error=batch.id, attempts=0)
                                         for r in chunk])
        batch_ids.append(batch.id)
    if wait:
        for batch_id in batch_ids:
            _load(store, client, tagger, _wait(client, batch_id, cfg.annotate.batch_poll_s,
                                               progress), stats)
    return _summary(fp, counts, stats, started)


def _summary(fp, counts, stats: TagStats, started: float) -> AnnotateSummary:
    return AnnotateSummary.of(fp, counts["instances"], stats, time.perf_counter() - started)
