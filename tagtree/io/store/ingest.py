"""Store queries of the ingest stage: datasets, instances, provenance, quarantine, stats."""

from __future__ import annotations

from contextlib import contextmanager

import pyarrow as pa
import pyarrow.compute as pc


class IngestQueries:
    def register_dataset(self, name: str, role: str, fmt: str | None) -> None:
        self.rows(
            "INSERT INTO datasets (name, role, format) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET role = excluded.role, "
            "format = coalesce(excluded.format, datasets.format)",
            [name, role, fmt],
        )

    def write_ingest_group(self, batches, line_offsets, *, dataset: str, source_file: str) -> int:
        """Write parsed batches of one file (Arrow tables, or Parquet files of shards) in one
        transaction with one INSERT per table, adding the per-file columns and shifting each
        batch's line numbers by its offset. Returns how many instances were new: the first row
        of an id wins, whether the id is already stored or repeats inside the group."""
        new = 0
        read = sum(b.read for b in batches)
        quarantined = sum(b.quarantined for b in batches)
        fmt = next((b.fmt for b in batches if b.fmt), None)
        with self.transaction(), self._staged(batches, line_offsets) as rel:
            if read - quarantined:
                inst = rel["instances"]
                new = self.rows(
                    "INSERT INTO instances (id, dataset, format, instruction, response, system, "
                    "n_turns, raw, source_file, source_line) "
                    "SELECT id, ?, ?, instruction, response, system, n_turns, raw, ?, source_line "
                    f"FROM {inst} n "
                    "WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = n.id) "
                    "AND (n.id, n.source_line) IN "
                    f"(SELECT (id, min(source_line)) FROM {inst} GROUP BY id)",
                    [dataset, fmt, source_file],
                )[0][0]
                self.run(
                    "INSERT INTO instance_sources (instance_id, dataset, source_file, source_line) "
                    f"SELECT instance_id, ?, ?, source_line FROM {rel['sources']}",
                    [dataset, source_file],
                )
            if quarantined:
                # forget_file() cleared this file's rows, so a re-ingest shows current reasons.
                self.run(
                    "INSERT OR REPLACE INTO quarantine (source_file, source_line, dataset, field, "
                    "reason, message, raw) "
                    "SELECT ?, source_line, ?, field, reason, message, raw "
                    f"FROM {rel['quarantine']}",
                    [source_file, dataset],
                )
        return new

    @contextmanager
    def _staged(self, batches, line_offsets):
        """One SQL relation per part (instances, sources, quarantine) over all ``batches``, with
        file line numbers: registered Arrow tables, or one multi-file Parquet scan joined to
        the shards' line offsets."""
        parts = ("instances", "sources", "quarantine")
        registered = []

        def register(name, table) -> str:
            self.con.register(name, table)
            registered.append(name)
            return name

        try:
            if all(isinstance(b.instances, str) for b in batches):
                offsets = pa.table({
                    "file": [getattr(b, part) for b in batches for part in parts],
                    "line_offset": pa.array(
                        [o for o in line_offsets for _ in parts], pa.int64()
                    ),
                })
                register("_ingest_offsets", offsets)
                names = {}
                for part in parts:
                    files = ", ".join(
                        "'" + getattr(b, part).replace("'", "''") + "'" for b in batches
                    )
                    names[part] = (
                        "(SELECT s.* EXCLUDE (filename, source_line), "
                        "s.source_line + o.line_offset AS source_line "
                        f"FROM read_parquet([{files}], filename = true) s "
                        "JOIN _ingest_offsets o ON o.file = s.filename)"
                    )
            else:
                names = {
                    part: register(f"_ingest_{part}", pa.concat_tables(
                        _shift(getattr(b, part), o) for b, o in zip(batches, line_offsets,
                                                                   strict=True)
                    ))
                    for part in parts
                }
            yield names
        finally:
            for name in registered:
                self.con.unregister(name)

    def quarantine_summary(self, source_files: list[str], first: int = 5
                           ) -> tuple[list[tuple[str, int]], list[tuple]]:
        """Quarantined rows of ``source_files``: (reason, count) most frequent first, and the
        first ``first`` rows as (source_file, source_line, field, message)."""
        if not source_files:
            return [], []
        marks = ", ".join("?" for _ in source_files)
        counts = self.rows(f"SELECT reason, count(*) FROM quarantine WHERE source_file IN "
                           f"({marks}) GROUP BY reason ORDER BY 2 DESC, 1", source_files)
        rows = self.rows(f"SELECT source_file, source_line, field, message FROM quarantine "
                         f"WHERE source_file IN ({marks}) ORDER BY source_file, source_line "
                         "LIMIT ?", [*source_files, first])
        return [(r, int(n)) for r, n in counts], rows

    def forget_file(self, source_file: str) -> None:
        """Drop a file's provenance and quarantine rows before (re-)reading it, so a re-ingest,
        or a resumed one after a kill, rewrites them instead of adding to them. Instances stay."""
        with self.transaction():
            self.run("DELETE FROM quarantine WHERE source_file = ?", [source_file])
            self.run("DELETE FROM instance_sources WHERE source_file = ?", [source_file])

    def pool_ids(self, datasets: list[str] | None = None) -> list[str]:
        """Instances of the pool: seen in a dataset whose role is 'pool' (or in ``datasets``)."""
        if datasets:
            sql = (
                "SELECT DISTINCT instance_id FROM instance_sources WHERE dataset IN "
                f"({', '.join('?' for _ in datasets)}) ORDER BY 1"
            )
            return [r[0] for r in self.rows(sql, datasets)]
        return [
            r[0]
            for r in self.rows(
                "SELECT DISTINCT s.instance_id FROM instance_sources s JOIN datasets d "
                "ON d.name = s.dataset WHERE d.role = 'pool' ORDER BY 1"
            )
        ]

    def stats(self) -> dict:
        return {
            "instances": self.scalar("SELECT count(*) FROM instances"),
            "datasets": self.rows(
                "SELECT d.name, d.role, d.format, count(DISTINCT s.instance_id), "
                "count(s.instance_id) "
                "FROM datasets d LEFT JOIN instance_sources s ON s.dataset = d.name "
                "GROUP BY ALL ORDER BY 1"
            ),
            "formats": self.rows(
                "SELECT format, count(*) FROM instances GROUP BY 1 ORDER BY 2 DESC"
            ),
            "quarantine": self.rows(
                "SELECT reason, coalesce(field, ''), count(*) FROM quarantine "
                "GROUP BY ALL ORDER BY 3 DESC"
            ),
        }

    def quarantine_rows(self, limit: int = 20) -> list[tuple]:
        return self.rows(
            "SELECT source_file, source_line, reason, message FROM quarantine "
            "ORDER BY source_file, source_line LIMIT ?",
            [limit],
        )


def _shift(table, offset: int):
    if not offset:
        return table
    i = table.schema.get_field_index("source_line")
    return table.set_column(i, "source_line", pc.add(table["source_line"], offset))
