"""Configuration sections of the stages that bring data in: store, ingest, llm, annotate, embed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tagtree.config.section import Section


class StoreConfig(Section):
    db: str = Field("tagtree.duckdb", description="DuckDB file holding every table of a run.")


class IngestConfig(Section):
    format: Literal["auto", "alpaca", "sharegpt", "openai", "dolly", "prompt_response", "turns"] = (
        Field("auto", description="Input format; 'auto' detects it from the first valid record.")
    )
    dataset: str | None = Field(
        None, description="Dataset name recorded with each row; default: the file's stem."
    )
    batch_rows: int = Field(
        50_000, ge=100, description="Rows parsed per batch before writing to DuckDB (memory bound)."
    )
    workers: int = Field(
        0, ge=0, description="Processes parsing large JSONL files in parallel; 0: one per core "
        "(at most 4), 1: parse in the writing process.",
    )
    memory_limit: str = Field(
        "1GB", description="DuckDB memory limit while ingesting (bounds the writer's peak RSS).",
    )
    split: str | None = Field(
        None, description="Split read from a Hugging Face dataset directory with several "
        "(DatasetDict save_to_disk or Hub-style Parquet folder); unset: the only split, else "
        "'train'.",
    )


class LLMConfig(Section):
    base_url: str | None = Field(
        None,
        description="OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp). Unset: the "
        "offline default starts a local server with a small model shipped in a wheel.",
    )
    model: str | None = Field(None, description="Model name sent to the endpoint.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Name of the env var holding the API key (never the key)."
    )
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout in seconds.")
    max_retries: int = Field(6, ge=0, description="Retries per request on 429/5xx/timeouts.")
    max_retry_after_s: float = Field(
        60.0, ge=0, description="Longest server-asked wait (Retry-After) honoured before a retry; "
        "longer asks are cut to this.",
    )
    breaker_failures: int = Field(
        8, ge=0, description="Connection failures/timeouts in a row that stop annotate with exit "
        "2 (fewer while the endpoint never answered: all requests in flight); 0: never stop.",
    )
    temperature: float = Field(0.0, ge=0, description="Sampling temperature for tagging.")
    max_tokens: int = Field(
        256, ge=16, description="Most completion tokens per tagging request (caps cost and time)."
    )
    price_in_per_mtok: float = Field(0.0, ge=0, description="USD per 1M prompt tokens (cost).")
    price_out_per_mtok: float = Field(0.0, ge=0, description="USD per 1M completion tokens.")
    batch_price_share: float = Field(
        0.5, ge=0, le=1, description="Batch API price as a share of the online price (OpenAI: "
        "0.5, a 50% discount); applied to tokens of batch results in cost estimates.")


class AnnotateConfig(Section):
    tagger: Literal["keyphrase", "llm"] = Field(
        "keyphrase",
        description="Offline default when no endpoint is set: 'keyphrase' (embedding-ranked "
        "phrases) or 'llm' (local small model). With llm.base_url set, the endpoint is used.",
    )
    phrase_embedder: Literal["embed", "static"] = Field(
        "embed",
        description="Keyphrase tagger's embedder: 'embed' (the [embed] section's, MiniLM by "
        "default) or 'static' (WordLlama token vectors, ~30x faster annotate; tags, tree and "
        "baselines keep [embed]'s).",
    )
    phrase_vectors: Literal["separate", "context"] = Field(
        "separate",
        description="Keyphrase tagger: 'separate' (every phrase embedded on its own; version 1) "
        "or 'context' (one embedder pass per instance scores the phrases, stores the instance "
        "vectors for the tree; version 2, faster, lower MT-Bench figures so far).",
    )
    doc_chars: int = Field(
        1000, ge=0,
        description="Keyphrase tagger ('separate'): phrases are scored against the instance's "
        "first N characters (rows no longer than that hand their vector on as the instance "
        "vector; longer ones are embedded again for the tree). 0: against the whole instance "
        "text as the embedder reads it, so every row's vector is handed on (no second pass; "
        "different tags for the longer rows: see docs/annotate.md).",
    )
    topic_fallback: bool = Field(
        True,
        description="Keyphrase tagger: a row of numbers and symbols with no phrase to take "
        "('-4 + (-3) =') is tagged with the shipped topic headings nearest to its text "
        "('algebra', 'arithmetic'); false: such rows fail and stay out of the tree and of "
        "every selection.",
    )
    processes: int = Field(
        0, ge=0,
        description="Keyphrase tagger on the local embedder: worker processes, each with its "
        "share of the cores (0: one per 4 cores, at most 8, once 1,000 rows are pending, "
        "since one ONNX session takes at most 4 threads: 1 on a 2-core machine, where 2 "
        "processes gained nothing; 1: tag in the calling process).",
    )
    concurrency: int = Field(16, ge=1, description="Requests in flight at once.")
    requests_per_minute: float | None = Field(None, gt=0, description="Client-side rate limit.")
    tokens_per_minute: float | None = Field(None, gt=0, description="Client-side token limit.")
    min_tags: int = Field(2, ge=1, description="Fewest tags accepted per instance.")
    max_tags: int = Field(12, ge=1, description="Most tags kept per instance.")
    critic_rounds: int = Field(
        0, ge=0, le=3,
        description="Act-critic refinement rounds, 0-3 (the paper: at most 3); 2 requests each.",
    )
    max_input_tokens: int = Field(
        1024,
        ge=64,
        description="Longer inputs are truncated: instruction kept, response head+tail.",
    )
    mode: Literal["online", "batch"] = Field(
        "online", description="'batch' uses the OpenAI Batch API."
    )
    prompt_version: str = Field("v1", description="Prompt template version (tagtree/prompts/).")
    batch_size: int = Field(
        2000, ge=1, description="Instances read from the store per page while annotating."
    )
    local_threads: int = Field(
        0, ge=0, description="Local LLM: llama.cpp threads (0: the CPU cores, at most 4; idle "
        "threads sleep, so neighbours keep their share).",
    )
    local_decode_threads: int = Field(
        1, ge=0, description="Local LLM: threads for decoding (token by token; at most "
        "local_threads; 0: as many as local_threads). Each decode step ends on a thread "
        "barrier that sleeping threads make slow: one thread decoded 2x faster than two.",
    )
    local_spin: int = Field(
        0, ge=0, description="Local LLM: rounds an idle OpenMP thread spins at a barrier before "
        "it sleeps (GOMP_SPINCOUNT; 0: sleep at once). 3000 with local_decode_threads = 0 on "
        "idle cores: 0.70-0.72 against 0.49 requests/s, but the first tag beside two busy "
        "processes took 11-12 s against 8-9. Read when llama.cpp loads (once per process); "
        "OMP_WAIT_POLICY or GOMP_SPINCOUNT in the environment win.",
    )
    local_poll: int = Field(
        0, ge=0, le=100, description="Local LLM: llama.cpp busy-wait polling level 0-100 (0: "
        "threads sleep; llama.cpp's 50 spun on cores other work needed).",
    )
    local_parallel: int = Field(
        2, ge=1, description="Local LLM: server slots (requests in flight; decoding is batched "
        "across them)."
    )
    local_batch: int = Field(
        2048, ge=1, description="Local LLM: prompt tokens per batch (n_batch)."
    )
    local_max_tags: int = Field(
        6, ge=1, description="Local LLM: most tags asked of the 135M model (min with max_tags; "
        "past ~6 it repeats itself, and every tag costs decode time on the CPU).",
    )
    local_max_tokens: int = Field(
        96, ge=16, description="Local LLM: most completion tokens per request (min with "
        "llm.max_tokens; 6 short tags take ~40-60).",
    )
    local_max_input_tokens: int = Field(
        256, ge=32, description="Local LLM: longer inputs are truncated to this (min with "
        "max_input_tokens): prompt evaluation is the CPU's main cost per request.",
    )
    batch_poll_s: float = Field(
        30.0, gt=0, description="Batch mode: seconds between status polls of a submitted batch."
    )
    batch_max_requests: int = Field(
        50_000, ge=1, description="Batch mode: most requests per batch (OpenAI's limit: 50,000)."
    )


class EmbedConfig(Section):
    backend: Literal["local", "static", "openai"] = Field(
        "local", description="'local': shipped int8 MiniLM (384-d); 'static': WordLlama static "
        "token vectors (256-d, shipped in the wordllama wheel, ~50x faster); 'openai': "
        "/v1/embeddings.",
    )
    model: str | None = Field(None, description="Embedding model name for the 'openai' backend.")
    base_url: str | None = Field(
        None, description="Endpoint for the 'openai' backend; unset: the same as llm.base_url."
    )
    batch_size: int = Field(256, ge=1, description="Texts per embedding call.")
    max_tokens: int = Field(
        256, ge=8, description="Local model: longer texts are truncated to this many word pieces."
    )
    threads: int = Field(
        0, ge=0, description="Local model: onnxruntime threads (0: min(4, CPU cores); on a "
        "local Dask/Ray worker, its share of the cores).",
    )
