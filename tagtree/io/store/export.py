"""Store queries of the export stage: the selected records, exports."""

from __future__ import annotations

import pyarrow as pa


class ExportQueries:
    def selection_records(self, run_id: str, method: str) -> pa.Table:
        """The selected instances with their original records, in rank order."""
        return self.arrow(
            "SELECT s.rank, i.id, i.dataset, i.format, i.instruction, i.response, i.system, "
            "i.raw, i.source_file FROM selections s JOIN instances i ON i.id = s.instance_id "
            "WHERE s.run_id = ? AND s.method = ? ORDER BY s.rank", [run_id, method])

    def write_export(self, run_id: str, uri: str, kind: str, rows: int, sha256: str) -> None:
        self.rows("INSERT OR REPLACE INTO exports (run_id, uri, kind, rows, sha256) "
                  "VALUES (?, ?, ?, ?, ?)", [run_id, uri, kind, rows, sha256])

    def exports(self, run_id: str) -> list[tuple]:
        return self.rows("SELECT uri, kind, rows, sha256 FROM exports WHERE run_id = ? "
                         "ORDER BY kind, uri", [run_id])
