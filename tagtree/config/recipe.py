"""Configuration: the whole recipe (``Config``), where each value came from (defaults < recipe
file < environment < overrides), the knob list the README is generated from, and budgets."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from tagtree.config.inputs import (
    AnnotateConfig,
    EmbedConfig,
    IngestConfig,
    LLMConfig,
    StoreConfig,
)
from tagtree.config.outputs import ExportConfig, ObjectStoreConfig, ReportConfig, RunnerConfig
from tagtree.config.selection import SampleConfig, ScoreConfig, TreeConfig
from tagtree.errors import TagtreeError

DEFAULT_RECIPE = "tagtree.toml"

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
