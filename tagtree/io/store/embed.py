"""Store queries of the embed stage's instance vectors: instance_embeddings (tag vectors are
the tree stage's, in ``tree``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


class EmbedQueries:
    def missing_instance_embeddings(self, embedder: str, ids: list[str]) -> list[str]:
        t = self._aligned("SELECT w.instance_id FROM _ids w LEFT JOIN instance_embeddings e "
                          "ON e.instance_id = w.instance_id AND e.embedder = ? "
                          "WHERE e.instance_id IS NULL ORDER BY w.pos", ids, [embedder])
        return t.column("instance_id").to_pylist()

    def write_instance_embeddings(self, embedder: str, ids: list[str], vectors: np.ndarray) -> int:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1] if vectors.ndim == 2 else 0
        offsets = pa.array(np.arange(0, vectors.size + 1, max(dim, 1), dtype=np.int32))
        table = pa.table({"instance_id": pa.array(ids, pa.string()),
                          "embedder": pa.array([embedder] * len(ids), pa.string()),
                          "vector": pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel()))})
        return self.insert_arrow("instance_embeddings", table)

    def instance_vectors(self, embedder: str, ids: list[str]) -> np.ndarray:
        """(len(ids) x d) float32 in ``ids`` order; every id must have been embedded."""
        t = self._aligned("SELECT w.pos, e.vector FROM _ids w JOIN instance_embeddings e "
                          "ON e.instance_id = w.instance_id AND e.embedder = ? ORDER BY w.pos",
                          ids, [embedder])
        if t.num_rows != len(ids):
            raise ValueError(f"{len(ids) - t.num_rows} instances have no '{embedder}' embedding")
        col = t.column("vector").combine_chunks()
        flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return flat.reshape(len(ids), -1) if len(ids) else np.zeros((0, 0), np.float32)
