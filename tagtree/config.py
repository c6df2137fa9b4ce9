"""Configuration: one typed recipe drives the CLI, the flows and the deployments.

Precedence, lowest to highest: defaults < recipe file (``tagtree.toml``) < environment variables
< explicit overrides (CLI flags, flow parameters). Every knob is documented here once; ``tagtree
config show`` prints them all with their values and where each value came from.

Environment variables are ``TAGTREE_<SECTION>_<KNOB>`` (e.g. ``TAGTREE_ANNOTATE_CONCURRENCY``),
plus the conventional aliases listed in ``ENV_ALIASES``. Secrets are never knobs: the API key is
read from the environment variable *named* by ``llm.api_key_env`` when a request is made.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tagtree.errors import TagtreeError

DEFAULT_RECIPE = "tagtree.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StoreConfig(_Section):
    db: str = Field("tagtree.duckdb", description="DuckDB file holding every table of a run.")


class IngestConfig(_Section):
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


class LLMConfig(_Section):
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


class AnnotateConfig(_Section):
    tagger: Literal["keyphrase", "llm"] = Field(
        "keyphrase",
        description="Offline default when no endpoint is set: 'keyphrase' (embedding-ranked "
        "phrases) or 'llm' (local small model). With llm.base_url set, the endpoint is used.",
    )
    phrase_vectors: Literal["separate", "context"] = Field(
        "separate",
        description="Keyphrase tagger: 'separate' (every phrase embedded on its own; version 1) "
        "or 'context' (one embedder pass per instance scores the phrases, stores the instance "
        "vectors for the tree; version 2, faster, lower MT-Bench figures so far).",
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
        0, ge=0, description="Local LLM: llama.cpp threads (0: cores minus one, at least 1; "
        "one thread per core collapsed beside CPU-bound neighbours).",
    )
    local_poll: int = Field(
        0, ge=0, le=100, description="Local LLM: llama.cpp busy-wait polling level 0-100 (0: "
        "threads sleep; llama.cpp's 50 spun on cores other work needed).",
    )
    local_parallel: int = Field(
        2, ge=1, description="Local LLM: server slots (requests at once)."
    )
    local_batch: int = Field(
        2048, ge=1, description="Local LLM: prompt tokens per batch (n_batch)."
    )
    batch_poll_s: float = Field(
        30.0, gt=0, description="Batch mode: seconds between status polls of a submitted batch."
    )
    batch_max_requests: int = Field(
        50_000, ge=1, description="Batch mode: most requests per batch (OpenAI's limit: 50,000)."
    )


class EmbedConfig(_Section):
    backend: Literal["local", "openai"] = Field(
        "local", description="'local': shipped int8 MiniLM (384-d); 'openai': /v1/embeddings."
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


class TreeConfig(_Section):
    branching: int = Field(8, ge=2, description="Average children per internal node (k per level).")
    leaf_size: int = Field(6, ge=1, description="Average canonical tags per leaf.")
    root_max: int = Field(20, ge=2, description="Stop when a level has at most this many nodes.")
    max_depth: int = Field(6, ge=1, description="Most levels above the leaves.")
    min_tag_freq: int = Field(1, ge=1, description="Drop tags seen fewer times than this.")
    context: Literal["instances", "tags", "none"] = Field(
        "instances",
        description="Where a tag's context vector comes from: the embeddings of the instances "
        "it occurs in, the string vectors of the tags it occurs with, or none (strings only).",
    )
    context_weight: float = Field(
        1.0, ge=0, le=1,
        description="Leaves cluster (1-w)*string + w*context vectors: 0 = tag strings only, "
        "1 = only the instances a tag occurs in.",
    )
    upper_context_weight: float = Field(
        0.5, ge=0, le=1,
        description="The same mix for the levels above the leaves (node means of it).",
    )
    k_search: bool = Field(
        True,
        description="Choose each level's cluster count by silhouette among counts around "
        "leaf_size / branching (and root_max/4..root_max on top); false: the fixed ratios.",
    )
    merge_threshold: float = Field(
        0.92,
        ge=0,
        le=1,
        description="Cosine similarity above which tags are merged as near-duplicates.",
    )
    vocabulary: str = Field(
        "builtin",
        description="Topic headings that name the upper levels offline: 'builtin' (tagtree's "
        "own list of disciplines, fields and task types), a path to an indented outline file "
        "(one heading per line, two spaces per tier), or 'none' (names from member tags only).",
    )
    vocabulary_min_score: float = Field(
        0.35, ge=-1, le=2,
        description="A node takes a heading only when its match score (cosine plus "
        "distinctiveness) reaches this; otherwise its member tags name it.",
    )
    refine_with_llm: bool = Field(False, description="Name/merge/reassign clusters with the LLM.")
    refine_min_level: int = Field(
        1, ge=0, description="Lowest level refined by the LLM (0 = leaves too: one call per leaf)."
    )
    tagger: str | None = Field(
        None,
        description="Tagger fingerprint whose annotations build the tree; unset: the one "
        "with the most usable annotations.",
    )
    far_quantile: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="A new tag is 'far' when its similarity to the nearest leaf "
        "is below this quantile of the tree's own tags' similarities (drift statistic).",
    )
    drift_threshold: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Share of a run's tag occurrences far from their leaf (new data, "
        "measured on the run's own datasets) above which curate rebuilds the tree.",
    )
    seed: int = Field(0, description="Random seed: same seed, same tree.")
    reuse: bool = Field(
        True,
        description="curate grounds new data on the store's current tree (same tagger and "
        "settings) while drift measured on the new data stays at or under drift_threshold; "
        "false: build the tree again every run.",
    )


class ScoreConfig(_Section):
    judge: bool = Field(
        False, description="Rate responses 1-6 with the LLM judge (costs requests)."
    )
    judge_weight: float = Field(0.5, ge=0, le=1, description="Weight of the judge in quality q(x).")
    judge_concurrency: int = Field(4, ge=1, description="Judge requests in flight at once.")
    judge_max_chars: int = Field(
        4000,
        ge=200,
        description="Instruction and response are each cut to this many characters "
        "in the judge prompt (head and tail kept).",
    )
    richness_quantile: float = Field(
        0.99,
        gt=0,
        le=1,
        description="Richness = raw IC sum / this quantile of the pool, clipped "
        "at 1. Lower: more instances reach the top score.",
    )
    quality_floor: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Lowest quality q(x); q = floor + (1 - floor) * score. "
        "Higher: quality matters less in the sampling objective.",
    )


class SampleConfig(_Section):
    budget: str = Field("0.05", description="Fraction (<1, e.g. 0.05) or count (e.g. 5000).")
    method: Literal["tags", "random", "instag", "deita", "kcenter", "quality",
                    "kmeans"] = Field(
        "tags", description="Selection method; 'tags' is TAGS, the rest are baselines."
    )
    pool: list[str] | None = Field(
        None,
        description="Datasets the selection draws from (a list, or comma-separated in the "
        "environment); unset: every pool dataset in the store. A curate run sets it to the "
        "datasets it ingested (plus its `pool_with`), so one dataset's run selects from it only.",
    )
    align: Literal["penalty", "quota", "none"] = Field(
        "penalty",
        description="How a target sample steers selection: KL penalty, quotas per "
        "node, or not at all ('none'). Used only when a target sample is stored.",
    )
    align_lambda: float = Field(
        2.0,
        ge=0,
        description="Weight of the KL penalty; 1 makes one nat of KL worth about one "
        "new leaf per selected instance. Higher: closer to the target, less diversity "
        "(2: with centrality on, 1 let MT-Bench's 5% selection drop a target pick).",
    )
    align_smoothing: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="Share of the uniform distribution mixed into leaf "
        "distributions before KL (keeps KL finite). Higher: misses cost less.",
    )
    align_level: int = Field(
        -1,
        ge=-1,
        description="Tree level on which penalty and quota alignment match the target (0 = "
        "leaves); -1: the lowest level at which the target touches at most budget-many nodes.",
    )
    concave: Literal["sqrt", "log1p"] = Field(
        "log1p", description="h in g(m) = min(1, m) + mass_weight*h(m): returns on a node's "
        "mass beyond its first instance."
    )
    mass_weight: float = Field(
        0.1,
        ge=0,
        description="Weight of h(m) against a node's coverage. 0: pure coverage; higher: more "
        "repeats in nodes already covered before covering new ones at lower levels.",
    )
    coverage: Literal["path", "typical"] = Field(
        "path",
        description="How a pick covers the nodes of its primary path: 'path' fully, "
        "'typical' by the share of its tags under each (prefers few-tag, typical instances).",
    )
    centrality: float = Field(
        0.3,
        ge=0,
        lt=0.5,
        description="Share of a node's coverage earned by how central the pick is among the "
        "node's instances (embedding cosine to their mean): 0 = any member covers it fully; "
        "higher = the most representative member is preferred, as k-means medoids are.",
    )
    kernel_tau: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Covering a leaf also covers the leaves whose instances' mean embedding is "
        "closer than this cosine, in proportion (a topic split over two leaves counts once): "
        "1 = off (each leaf on its own).",
    )
    quality_weight: float = Field(
        0.5,
        ge=0,
        description="Weight of q(x) in the objective, in units of one newly covered leaf. "
        "Higher: quality counts more against coverage; 0: coverage only.",
    )
    level_decay: float = Field(
        0.7,
        gt=0,
        description="gamma = decay**(levels below the top): weight of covering a node at each "
        "level. Lower: the top level dominates more; 1: every level counts the same.",
    )
    strategy: Literal["lazy", "stochastic"] = Field(
        "lazy",
        description="Greedy variant: 'lazy' (exact greedy result) or 'stochastic' "
        "(faster, (1-1/e-epsilon) in expectation).",
    )
    epsilon: float = Field(0.01, gt=0, lt=1, description="'stochastic': accuracy/speed trade-off.")
    deita_threshold: float = Field(
        0.9,
        gt=0,
        le=1,
        description="'deita': cosine similarity at which a candidate counts as a "
        "repeat of a better instance already taken.",
    )
    kcenter_max_pool: int = Field(
        100_000, ge=1, description="'kcenter': run on a random subset this large (it is O(n k d))."
    )
    dup_threshold: float = Field(
        0.95,
        gt=0,
        le=1,
        description="Metric 'near_duplicates': cosine at which two picks count as near-duplicates.",
    )
    seed: int = Field(0, description="Random seed for sampling and random baselines.")


    @field_validator("pool", mode="before")
    @classmethod
    def _split_pool(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()] or None
        return value


class ExportConfig(_Section):
    out: str = Field(
        "out", description="Where the selection goes: a path with a file extension is the data "
        "file (manifest and report beside it), one without is a directory.")
    format: Literal["auto", "input", "jsonl", "parquet", "hf", "llamafactory", "axolotl"] = Field(
        "auto",
        description="'auto': one training file, the records as they came in when they share one "
        "format, else merged into chat messages; 'input': the original records in the input's "
        "container, one file per input format; 'jsonl': OpenAI chat messages per line; "
        "'parquet': one row per instance with normalised columns; 'hf': a datasets "
        "save_to_disk directory; 'llamafactory': ShareGPT JSON + dataset_info.json entry; "
        "'axolotl': messages JSONL + the datasets: block to paste.",
    )
    name: str = Field("selection", description="File name stem of the exported selection "
                      "(when export.out is a directory).")


class RunnerConfig(_Section):
    runner: Literal["thread", "dask", "ray"] = Field("thread", description="Prefect task runner.")
    address: str | None = Field(None, description="Address of an existing Dask/Ray cluster.")
    workers: int = Field(2, ge=1, description="Workers for a local cluster / thread pool.")
    shard_dir: str | None = Field(
        None, description="Directory for the Parquet shards of a dask/ray run, reachable by every "
        "worker and the writer (a shared filesystem on a real cluster); unset: next to the db.",
    )


class ObjectStoreConfig(_Section):
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, moto, ...); unset: AWS S3 itself."
    )
    region: str | None = Field(None, description="S3 region; unset: boto3's own default chain.")
    credentials_block: str | None = Field(
        None,
        description="Name of a prefect-aws AwsCredentials block; unset: credentials come "
        "from the environment (AWS_ACCESS_KEY_ID, profiles, instance roles).",
    )
    output_prefix: str = Field(
        "out/curated",
        description="Where on-upload writes selections and reports: an s3:// "
        "URI or a local directory.",
    )
    cache_dir: str = Field(
        ".tagtree-cache/objects",
        description="Local directory s3:// inputs are downloaded to "
        "(DuckDB reads local files only).",
    )
    state_db: str = Field(
        "tagtree-landing.duckdb",
        description="DuckDB file recording landed objects (key + "
        "ETag); separate from the curate store so the watcher never waits for a running curate.",
    )
    claim_lease_s: float = Field(
        6 * 3600.0,
        gt=0,
        description="Seconds an on-upload run's claim on an object is trusted: an object "
        "'processing' longer is taken over by the next run (as is one whose run crashed, failed "
        "or was cancelled). Keep it above the longest curate of one object.",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        description="Landing events sent per object version: the watcher's next poll sends a "
        "crashed or failed object again (a fresh event each time) until it has had this many.",
    )


class ReportConfig(_Section):
    chart: Literal["sunburst", "icicle"] = Field(
        "sunburst", description="Shape of the interactive knowledge-tree chart in the report."
    )
    levels_shown: int = Field(
        2,
        ge=1,
        description="Tree levels drawn at once; click a node to drill further down. "
        "More levels: more to see at once, but slower to open (every sector is drawn).",
    )
    max_sectors: int = Field(
        300,
        ge=1,
        description="Most nodes the tree chart draws at once: a level that would go "
        "past it is left for a click (one level always shows). More: busier and slower to draw.",
    )
    detail_nodes: int = Field(
        1500,
        ge=0,
        description="Nodes whose tags, description and examples go into the file "
        "(top levels first, then the most pool mass); the rest show counts only. More: a bigger "
        "file (~1 KB per node).",
    )
    tags_per_node: int = Field(12, ge=0, description="Most frequent tags listed per tree node.")
    examples_per_node: int = Field(
        3, ge=0, description="Example instructions per node (selected first, then best quality)."
    )
    example_chars: int = Field(280, ge=20, description="Example instructions cut to this length.")
    quality_bins: int = Field(30, ge=2, description="Bins of the quality score histogram.")
    filename: str = Field("report.html", description="Report file name inside export.out (next "
                          "to an export.out file: <stem>.<filename>).")


class Config(BaseModel):
    """The whole recipe. Sections mirror the pipeline stages."""

    model_config = ConfigDict(extra="forbid")

    store: StoreConfig = StoreConfig()
    ingest: IngestConfig = IngestConfig()
    llm: LLMConfig = LLMConfig()
    annotate: AnnotateConfig = AnnotateConfig()
    embed: EmbedConfig = EmbedConfig()
    tree: TreeConfig = TreeConfig()
    score: ScoreConfig = ScoreConfig()
    sample: SampleConfig = SampleConfig()
    export: ExportConfig = ExportConfig()
    runner: RunnerConfig = RunnerConfig()
    report: ReportConfig = ReportConfig()
    objects: ObjectStoreConfig = ObjectStoreConfig()


# Conventional variable names users already have set, mapped to knobs.
ENV_ALIASES = {
    "TAGTREE_DB": "store.db",
    "OPENAI_BASE_URL": "llm.base_url",
    "TAGTREE_LLM_MODEL": "llm.model",
}


def knobs() -> list[tuple[str, Any, str]]:
    """Every knob as (``section.name``, default, description)."""
    out = []
    for section, field in Config.model_fields.items():
        for name, info in field.annotation.model_fields.items():
            out.append((f"{section}.{name}", info.default, info.description or ""))
    return out


def knobs_markdown() -> str:
    """Every knob as a Markdown table (the README's configuration reference is this output)."""
    rows = ["| knob | default | meaning |", "|---|---|---|"]
    for key, default, help_ in knobs():
        shown = "unset" if default is None else f"`{default}`"
        rows.append(f"| `{key}` | {shown} | {help_.replace('|', '/')} |")
    return "\n".join(rows)


def env_name(key: str) -> str:
    section, name = key.split(".")
    return f"TAGTREE_{section}_{name}".upper()


def _coerce(raw: str) -> Any:
    """Environment values are strings; pydantic coerces them to each knob's type."""
    return None if raw == "" else raw


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> tuple[Config, dict[str, str]]:
    """Build the config and say where each non-default value came from.

    ``path``: a recipe file; when None, ``./tagtree.toml`` is read if it exists.
    ``overrides``: ``{"section.knob": value}``; None values mean "not given".
    """
    environ = os.environ if environ is None else environ
    data: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    recipe = Path(path) if path else Path(DEFAULT_RECIPE)
    if path and not recipe.exists():
        raise TagtreeError(f"recipe file not found: {recipe}")
    if recipe.exists():
        try:
            loaded = tomllib.loads(recipe.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise TagtreeError(f"{recipe}: invalid TOML: {exc}") from None
        for section, values in loaded.items():
            if not isinstance(values, dict):
                raise TagtreeError(f"{recipe}: '{section}' must be a table like [{section}]")
            for name, value in values.items():
                data.setdefault(section, {})[name] = value
                sources[f"{section}.{name}"] = str(recipe)
    known = {k for k, _, _ in knobs()}
    for key in known:
        var = env_name(key)
        if var in environ:
            section, name = key.split(".")
            data.setdefault(section, {})[name] = _coerce(environ[var])
            sources[key] = f"env {var}"
    for var, key in ENV_ALIASES.items():
        if var in environ and environ.get(env_name(key)) is None:
            section, name = key.split(".")
            data.setdefault(section, {})[name] = _coerce(environ[var])
            sources[key] = f"env {var}"
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in known:
            raise TagtreeError(f"unknown setting '{key}' (see `tagtree config show`)")
        section, name = key.split(".")
        data.setdefault(section, {})[name] = value
        sources[key] = "flag"
    try:
        return Config.model_validate(data), sources
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise TagtreeError(f"invalid configuration: {problems}") from None


def parse_budget(budget: str | float | int, pool_size: int) -> int:
    """A budget below 1 is a fraction of the pool, otherwise a count; never more than the pool."""
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise TagtreeError(
            f"budget must be a fraction like 0.05 or a count like 5000, got {budget!r}"
        ) from None
    if value < 0:
        raise TagtreeError(f"budget must not be negative, got {budget!r}")
    count = round(value * pool_size) if value < 1 else int(value)
    return min(count, pool_size)
