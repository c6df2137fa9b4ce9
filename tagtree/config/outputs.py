"""Configuration sections of what a run produces and where it runs: export, runner, objects,
report."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tagtree.config.section import Section


class ExportConfig(Section):
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


class RunnerConfig(Section):
    runner: Literal["thread", "dask", "ray"] = Field("thread", description="Prefect task runner.")
    address: str | None = Field(None, description="Address of an existing Dask/Ray cluster.")
    workers: int = Field(2, ge=1, description="Workers for a local cluster / thread pool.")
    shard_dir: str | None = Field(
        None, description="Directory for the Parquet shards of a dask/ray run, reachable by every "
        "worker and the writer (a shared filesystem on a real cluster); unset: next to the db.",
    )


class ObjectStoreConfig(Section):
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, moto, ...); unset: AWS S3 itself."
    )
    region: str | None = Field(None, description="S3 region; unset: boto3's own default chain.")
    timeout_s: float = Field(
        60.0, gt=0, description="Seconds an S3 request may take to connect and then to answer "
        "(botocore's connect and read timeouts): an endpoint that accepts and never answers "
        "costs this per attempt (4 attempts) before the task's own retries.",
    )
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


class ReportConfig(Section):
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
