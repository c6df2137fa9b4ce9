"""(n, d) float32 arrays <-> Arrow list<float> columns (DuckDB FLOAT[], Parquet), without a
Python loop: the one encoding the store's vector tables and the annotate shards' files share."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def vector_column(vectors: np.ndarray) -> pa.Array:
    """One list<float> entry per row of ``vectors`` (an empty or 1-d array gives no entries)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    offsets = pa.array(np.arange(0, vectors.size + 1, max(dim, 1), dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel()))


def column_vectors(column: pa.Array | pa.ChunkedArray, dim: int | None = None) -> np.ndarray:
    """A list<float> column of equal-length entries -> (n, d) float32."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(arr) == 0:
        return np.zeros((0, dim or 0), np.float32)
    flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(len(arr), -1)
