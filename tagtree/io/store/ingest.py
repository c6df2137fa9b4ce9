"""Store queries of the ingest stage: datasets, instances, provenance, quarantine, stats."""

from __future__ import annotations


class IngestQueries:
    def register_dataset(self, name: str, role: str, fmt: str | None) -> None:
        self.rows(
            "INSERT INTO datasets (name, role, format) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET role = excluded.role, "
            "format = coalesce(excluded.format, datasets.format)",
            [name, role, fmt],
        )

    def write_ingest_batch(self, instances, sources, quarantine) -> int:
        """Write one parsed batch in one transaction; returns how many instances were new."""
        new = 0
        with self.transaction():
            if instances.num_rows:
                self.con.register("_new_instances", instances)
                try:
                    cols = ", ".join(instances.column_names)
                    new = self.rows(
                        f"INSERT INTO instances ({cols}) SELECT {cols} FROM _new_instances n "
                        "WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = n.id)"
                    )[0][0]
                finally:
                    self.con.unregister("_new_instances")
            if sources.num_rows:
                self.insert_arrow("instance_sources", sources, append=True)
            if quarantine.num_rows:
                # A re-ingest of a fixed file should show the current reason, not the old one.
                self.insert_arrow("quarantine", quarantine, replace=True)
        return new

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
