"""tagtree: Tree-aware Aligned Global Sampling (TAGS) for instruction-tuning data selection.

The library, first: ``curate()`` runs the whole pipeline, and each stage is one function with
one calling convention, ``stage(store, ..., config=None, resources=None)``, returning a typed
summary::

    import tagtree

    tagtree.ingest("pool.duckdb", ["data.jsonl"])
    tagtree.annotation("pool.duckdb")
    ...
    result = tagtree.curate("pool.duckdb", ["data.jsonl"], budget=0.05, out="out/")

``store``: a DuckDB file path or an open ``tagtree.io.store.Store``; ``config``: a
``tagtree.Config``, a dict of one, a recipe path, or None (``./tagtree.toml`` and the
environment); ``resources``: a ``tagtree.Resources`` with the embedder, tagger, chat model and
object store to use (built from the config when left out). See docs/python-api.md.

Layout: pure algorithms in the top-level modules (no Prefect, no network, no DuckDB); adapters
with I/O in ``tagtree.io``; the stage functions in ``tagtree.stages``; the command line in
``tagtree.cli``. Names are imported on first use, so ``import tagtree`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_API = {
    "curate": "tagtree.stages.curate",
    "ingest": "tagtree.stages.ingest",
    "annotate": "tagtree.stages.annotate",
    "embed": "tagtree.stages.embed",
    "build_tree": "tagtree.stages.tree",
    "ground": "tagtree.stages.ground",
    "score": "tagtree.stages.score",
    "sample": "tagtree.stages.sample",
    "export": "tagtree.stages.export",
    "report": "tagtree.stages.report",
    "Resources": "tagtree.stages.resources",
    "Config": "tagtree.config",
    "load_config": "tagtree.config",
    "TagtreeError": "tagtree.errors",
    **{name: "tagtree.stages.results" for name in (
        "StageResult", "IngestResult", "AnnotateResult", "EmbedResult", "TreeResult",
        "GroundResult", "ScoreResult", "SampleResult", "ExportResult", "ReportResult",
        "CurateResult")},
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'tagtree' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


if TYPE_CHECKING:  # what a type checker and an IDE see
    from tagtree.config import Config, load_config  # noqa: F401
    from tagtree.errors import TagtreeError  # noqa: F401
    from tagtree.stages.annotate import annotate  # noqa: F401
    from tagtree.stages.curate import curate  # noqa: F401
    from tagtree.stages.embed import embed  # noqa: F401
    from tagtree.stages.export import export  # noqa: F401
    from tagtree.stages.ground import ground  # noqa: F401
    from tagtree.stages.ingest import ingest  # noqa: F401
    from tagtree.stages.report import report  # noqa: F401
    from tagtree.stages.resources import Resources  # noqa: F401
    from tagtree.stages.results import *  # noqa: F401,F403
    from tagtree.stages.sample import sample  # noqa: F401
    from tagtree.stages.score import score  # noqa: F401
    from tagtree.stages.tree import build_tree  # noqa: F401
