"""The calling convention's two conversions: a store or its path -> an open store, and
whatever names a configuration -> a ``Config``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tagtree.config import Config, load_config


def as_config(config: Config | dict | str | Path | None) -> Config:
    """A ``Config`` from a Config (as is), a dict of one (the Prefect tasks' JSON-able form), a
    recipe file, or None (``./tagtree.toml`` when present, and the environment: what the CLI
    reads)."""
    if isinstance(config, Config):
        return config
    if isinstance(config, dict):
        return Config.model_validate(config)
    return load_config(config)[0]


def with_settings(config: Config, settings: dict[str, Any]) -> Config:
    """A copy of ``config`` with ``{"section.knob": value}`` set (None values: unchanged)."""
    from pydantic import ValidationError

    from tagtree.errors import TagtreeError

    data = config.model_dump()
    for key, value in settings.items():
        if value is not None:
            section, name = key.split(".")
            if section not in data or name not in data[section]:
                raise TagtreeError(f"unknown setting '{key}' (see `tagtree config show`)")
            data[section][name] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                             for err in exc.errors())
        raise TagtreeError(f"invalid configuration: {problems}") from None


def store_path(store: Any) -> str:
    """The file of a store given as a ``Store`` or a path."""
    return str(getattr(store, "path", store))


@contextlib.contextmanager
def open_store(store: Any, *, read_only: bool = False) -> Iterator[Any]:
    """``store`` itself when it is an open ``Store`` (left open: the caller owns it), else a
    ``Store`` on that path for the duration of the block."""
    from tagtree.io.store import Store

    if isinstance(store, Store):
        yield store
        return
    with Store(store, read_only=read_only) as opened:
        yield opened
