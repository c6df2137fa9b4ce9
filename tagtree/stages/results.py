"""Typed summaries of the stages. Each carries the figures a reader looks at as attributes, the
one-line account (``line``) and every figure the stage reported (``figures``, the JSON-able
dict the Prefect tasks return); it reads like that dict too (``result["drift"]``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

R = TypeVar("R", bound="StageResult")

_MAX_FIGURES = 6
_SKIP = {"line", "seconds", "files", "sha256", "path", "run_id", "table"}


def _figure(value: Any) -> str | None:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, str) and len(value) <= 40:
        return value
    return None


def stage_figures(summary: dict) -> str:
    """One line for a stage: its own ``line`` if it has one, else its scalar figures."""
    if isinstance(summary.get("line"), str):
        return summary["line"]
    parts = []
    for key, value in summary.items():
        shown = None if key in _SKIP else _figure(value)
        if key == "bytes" and isinstance(value, int):
            shown = f"{value / 1e6:.1f} MB"
        if shown is not None:
            parts.append(f"{key.replace('_', ' ')} {shown}")
    return ", ".join(parts[:_MAX_FIGURES])


@dataclass(frozen=True, eq=False)
class StageResult(Mapping[str, Any]):
    line: str = ""
    figures: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls: type[R], figures: Mapping[str, Any]) -> R:
        names = {f.name for f in fields(cls)} - {"figures", "line"}
        return cls(figures=dict(figures), line=stage_figures(figures),
                   **{n: figures.get(n) for n in names if n in figures})

    def to_dict(self) -> dict[str, Any]:
        return dict(self.figures)

    def __getitem__(self, key: str) -> Any:
        return self.figures[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.figures)

    def __len__(self) -> int:
        return len(self.figures)


@dataclass(frozen=True, eq=False)
class IngestResult(StageResult):
    loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    files: list[dict] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class AnnotateResult(StageResult):
    tagger: str = ""
    instances: int = 0
    requested: int = 0
    ok: int = 0
    failed: int = 0
    cached: int = 0


@dataclass(frozen=True, eq=False)
class EmbedResult(StageResult):
    tagger: str = ""
    embedder: str = ""
    tags: int = 0
    embedded_new: int = 0


@dataclass(frozen=True, eq=False)
class TreeResult(StageResult):
    tree_version: str = ""
    tagger: str = ""
    embedder: str = ""
    n_tags: int = 0
    n_leaves: int = 0
    levels: list[int] = field(default_factory=list)
    reused: bool = False


@dataclass(frozen=True, eq=False)
class GroundResult(StageResult):
    tree_version: str = ""
    instances: int = 0
    instance_nodes: int = 0
    new_tags: int = 0
    drift: float = 0.0
    rebuild_advised: bool = False


@dataclass(frozen=True, eq=False)
class ScoreResult(StageResult):
    tree_version: str = ""
    instances: int = 0
    judged: int = 0
    quality: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class SampleResult(StageResult):
    run_id: str = ""
    tree_version: str = ""
    pool: int = 0
    selected: int = 0
    methods: dict[str, dict] = field(default_factory=dict)
    kl_before: float | None = None  # KL(target || pool) and (|| selection) on the leaves
    kl_after: float | None = None
    align_level: int | None = None  # the level a selection of this size is aligned on, and
    kl_before_aligned: float | None = None  # the two KLs there (the figure that moves)
    kl_after_aligned: float | None = None


@dataclass(frozen=True, eq=False)
class ExportResult(StageResult):
    run_id: str = ""
    rows: int = 0
    format: str = ""
    files: list[str] = field(default_factory=list)
    manifest: str = ""


@dataclass(frozen=True, eq=False)
class ReportResult(StageResult):
    path: str = ""
    bytes: int = 0
    run_id: str = ""
    tree_version: str = ""
    selected: int = 0


@dataclass(frozen=True, eq=False)
class CurateResult(StageResult):
    run_id: str = ""
    db: str = ""
    tree_version: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
