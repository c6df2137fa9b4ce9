"""The DuckDB store: opening, schema creation, version check, generic keyed writes."""

from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from tagtree.errors import StoreBusy, TagtreeError
from tagtree.io.store.schema import MIGRATIONS, SCHEMA_VERSION, TABLES

SNAPSHOT_PREFIX = ".tagtree-snapshot-"  # a reader's copy of a store being written


def _ids_table(ids: list[str]) -> pa.Table:
    return pa.table({"instance_id": pa.array(ids, pa.string()),
                     "pos": pa.array(np.arange(len(ids), dtype=np.int64))})


def _lock_message(path: str, exc: Exception) -> str:
    """DuckDB's 'Could not set lock' in words: who is writing the store, since when."""
    from tagtree.io.runlock import holder

    if "lock" not in str(exc).lower():
        return str(exc)
    who = holder(path)
    return (f"{who or 'another process'} is writing it; wait for it to finish or stop it, or "
            "use another --db")


class StoreBase:
    """A DuckDB file. One process writes at a time; open a Store per task/thread."""

    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = str(path)
        self.read_only = read_only
        if read_only and not Path(self.path).exists():
            raise TagtreeError(f"database not found: {self.path} (run `tagtree ingest` first)")
        if not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._holds_lock = False
        if not read_only and self.path != ":memory:":
            from tagtree.io import runlock

            runlock.acquire(self.path)  # a second writing process is refused here, by name
            self._holds_lock = True
        try:
            self._connect(read_only)
        except BaseException:
            self._release()
            raise

    def _connect(self, read_only: bool) -> None:
        self.snapshot: str | None = None  # the copy a reader opened while a run writes
        try:
            self.con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            if not (read_only and "lock" in str(exc).lower()):
                kind = StoreBusy if "lock" in str(exc).lower() else TagtreeError
                raise kind(f"cannot open database {self.path}: "
                           f"{_lock_message(self.path, exc)}") from None
            self.con = self._open_snapshot(exc)
        except duckdb.Error as exc:
            raise TagtreeError(f"{self.path} is not a usable DuckDB database: {exc}") from None
        # DuckDB draws a progress bar on stdout for long statements; ours are reported by the CLI.
        self.con.execute("SET enable_progress_bar = false").fetchall()
        self._lock = threading.RLock()
        self._check_and_create()

    def _open_snapshot(self, exc: Exception):
        """A running command holds the file: read a copy of it (the file and its WAL, as of
        now) instead of failing. The copy lives next to the store and goes at close()."""
        import os
        import shutil
        import socket
        import tempfile

        from tagtree.io.atomic import OWNER_FILE, sweep_dead_dirs

        parent = Path(self.path).parent
        sweep_dead_dirs(parent, SNAPSHOT_PREFIX, 24 * 3600)  # copies killed readers left
        folder = tempfile.mkdtemp(prefix=SNAPSHOT_PREFIX, dir=parent)
        copy = Path(folder) / Path(self.path).name
        try:
            Path(folder, OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}")
            shutil.copyfile(self.path, copy)
            if Path(self.path + ".wal").exists():
                shutil.copyfile(self.path + ".wal", str(copy) + ".wal")
            con = duckdb.connect(str(copy), read_only=True)
        except (OSError, duckdb.Error) as err:
            shutil.rmtree(folder, ignore_errors=True)
            raise TagtreeError(f"cannot open database {self.path}: "
                               f"{_lock_message(self.path, exc)} (and no snapshot: {err})"
                               ) from None
        self.snapshot = folder
        return con

    # -- lifecycle ---------------------------------------------------------------------------
    def _release(self) -> None:
        if self._holds_lock:
            from tagtree.io import runlock

            runlock.release(self.path)
            self._holds_lock = False

    def close(self) -> None:
        self.con.close()
        self._release()
        if self.snapshot:
            import shutil

            shutil.rmtree(self.snapshot, ignore_errors=True)
            self.snapshot = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def transaction(self):
        with self._lock:
            self.run("BEGIN TRANSACTION")
            try:
                yield self.con
            except BaseException:
                self.run("ROLLBACK")
                raise
            self.run("COMMIT")

    # -- schema ------------------------------------------------------------------------------
    def schema_version(self) -> int | None:
        exists = self.scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
        )
        if not exists:
            return None
        value = self.scalar("SELECT value FROM meta WHERE key = 'schema_version'")
        return int(value) if value is not None else None

    def _check_and_create(self) -> None:
        version = self.schema_version()
        if version is not None and version > SCHEMA_VERSION:
            raise TagtreeError(
                f"{self.path} was written by a newer tagtree (schema version {version}; this "
                f"tagtree understands up to {SCHEMA_VERSION}). Upgrade tagtree or use another --db."
            )
        if self.read_only:
            return
        with self.transaction():
            if version is not None:
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    for sql in MIGRATIONS.get(step, []):
                        sql(self) if callable(sql) else self.run(sql)
            for ddl in TABLES.values():
                self.run(ddl)
            self.run(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
            )
            # Identity of this database file's life: a deleted and recreated store is another
            # store, so results cached for the old one (whose rows are gone) are not reused.
            self.run("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)", [uuid.uuid4().hex])

    def store_id(self) -> str | None:
        """Random id given when the database was created (None for a read-only pre-id file)."""
        return self.scalar("SELECT value FROM meta WHERE key = 'store_id'")

    # -- generic access ----------------------------------------------------------------------
    # DuckDB 2 keeps a statement open until its result is read to the end (fetchone() does not
    # finish it): always go through these helpers, which read results completely.
    def run(self, sql: str, params=None) -> None:
        self.con.execute(sql, params).fetchall()

    def rows(self, sql: str, params=None) -> list[tuple]:
        return self.con.execute(sql, params).fetchall()

    def _aligned(self, sql: str, ids: list[str], params: list) -> pa.Table:
        """Run ``sql`` joined to the wanted ids (registered as ``_ids``), ordered by position."""
        with self._lock:
            self.con.register("_ids", _ids_table(ids))
            try:
                return self.arrow(sql, params)
            finally:
                self.con.unregister("_ids")

    def settings(self, names) -> dict:
        """DuckDB's current value of each setting in ``names`` (to restore after a change)."""
        return {name: self.scalar("SELECT current_setting(?)", [name]) for name in names}

    def scalar(self, sql: str, params=None):
        rows = self.con.execute(sql, params).fetchall()
        return rows[0][0] if rows else None

    def arrow(self, sql: str, params=None):
        """Result as a pyarrow Table (columnar, zero-copy into numpy)."""
        return self.con.sql(sql, params=params).to_arrow_table()

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"unknown table {table}")
        return self.scalar(f"SELECT count(*) FROM {table}")

    def insert_arrow(self, table: str, data, *, replace: bool = False, append: bool = False) -> int:
        """Insert an Arrow table whose columns name ``table``'s columns; keyed rows that already
        exist are kept (default: idempotent re-runs) or overwritten (``replace=True``).
        ``append=True`` is a plain insert for tables without a key. Returns rows written."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table}")
        cols = ", ".join(data.column_names)
        keyed = "PRIMARY KEY" in TABLES[table]  # tables without a key are replaced as a whole
        verb = (
            "INSERT"
            if append or not keyed
            else "INSERT OR REPLACE"
            if replace
            else "INSERT OR IGNORE"
        )
        with self._lock:
            self.con.register("_incoming", data)
            try:
                result = self.rows(f"{verb} INTO {table} ({cols}) SELECT {cols} FROM _incoming")
            finally:
                self.con.unregister("_incoming")
            return int(result[0][0]) if result else 0
