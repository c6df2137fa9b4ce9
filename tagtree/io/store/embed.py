"""Store queries of the embed stage's instance vectors: instance_embeddings (tag vectors are
the tree stage's, in ``tree``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tagtree.io.vector_columns import column_vectors, vector_column


class EmbedQueries:
    def missing_instance_embeddings(self, embedder: str, ids: list[str]) -> list[str]:
        t = self._aligned("SELECT w.instance_id FROM _ids w LEFT JOIN instance_embeddings e "
                          "ON e.instance_id = w.instance_id AND e.embedder = ? "
                          "WHERE e.instance_id IS NULL ORDER BY w.pos", ids, [embedder])
        return t.column("instance_id").to_pylist()

    def write_instance_embeddings(self, embedder: str, ids: list[str], vectors: np.ndarray) -> int:
        table = pa.table({"instance_id": pa.array(ids, pa.string()),
                          "embedder": pa.array([embedder] * len(ids), pa.string()),
                          "vector": vector_column(vectors)})
        return self.insert_arrow("instance_embeddings", table)

    def instance_vectors(self, embedder: str, ids: list[str]) -> np.ndarray:
        """(len(ids) x d) float32 in ``ids`` order; every id must have been embedded."""
        t = self._aligned("SELECT w.pos, e.vector FROM _ids w JOIN instance_embeddings e "
                          "ON e.instance_id = w.instance_id AND e.embedder = ? ORDER BY w.pos",
                          ids, [embedder])
        if t.num_rows != len(ids):
            raise ValueError(f"{len(ids) - t.num_rows} instances have no '{embedder}' embedding")
        return column_vectors(t.column("vector"))
