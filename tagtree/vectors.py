"""Row normalisation shared by the tree and sampling stages: one owner for both norms.

- ``l2_normalise_rows``: dense vectors to unit length (cosine geometry of embeddings; k-means,
  nearest neighbours, centroids in ``tagtree.tree``).
- ``l1_normalise_rows``: sparse non-negative weights to rows summing to 1 (each instance spreads
  one unit of mass over its leaves; ``tagtree.align``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def l2_normalise_rows(x: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm (float32; all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def l1_normalise_rows(grounding: sp.spmatrix) -> sp.csr_matrix:
    """Each non-empty row rescaled to sum to 1 (instance-normalised leaf weights)."""
    g = sp.csr_matrix(grounding, dtype=np.float64)
    sums = np.asarray(g.sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(inv) @ g)
