"""The DuckDB store. All SQL and table names live in this package: the schema in ``schema``,
each stage's queries in a module named after the stage, composed into one ``Store``; the
report's read-only aggregates in ``report`` (functions over a Store, not a mixin)."""

from tagtree.io.store.annotate import AnnotateQueries
from tagtree.io.store.base import StoreBase
from tagtree.io.store.embed import EmbedQueries
from tagtree.io.store.export import ExportQueries
from tagtree.io.store.ground import GroundQueries
from tagtree.io.store.ingest import IngestQueries
from tagtree.io.store.landed import LandedQueries
from tagtree.io.store.runs import RunQueries
from tagtree.io.store.sample import SampleQueries
from tagtree.io.store.schema import SCHEMA_VERSION, TABLES
from tagtree.io.store.score import ScoreQueries
from tagtree.io.store.tree import TreeQueries


class Store(IngestQueries, AnnotateQueries, EmbedQueries, TreeQueries, GroundQueries, ScoreQueries,
            SampleQueries, ExportQueries, LandedQueries, RunQueries, StoreBase):
    """Open with ``Store(path)``; use as a context manager so the file is closed."""


__all__ = ["Store", "SCHEMA_VERSION", "TABLES"]
