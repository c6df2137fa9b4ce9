"""Label metrics (benchmarks and tests): a tree, a grounding or a selection against known labels.

Nothing in the pipeline reads labels; these functions judge what it produced on data whose labels
are known (MT-Bench categories, MMLU subjects, planted topics):

- ``assignment``: each instance's heaviest node at one tree level (ties: lowest node id);
- ``purity`` and ``nmi``: agreement of an assignment with the labels (NMI: scikit-learn's,
  arithmetic mean normalisation);
- ``flat_anchor``: the same agreement for plain k-means of the instance embeddings with the same
  number of clusters, the yardstick a tree has to beat;
- ``labels_covered`` and ``label_entropy`` of a selection; ``label_share`` of a label set.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import scipy.sparse as sp

from tagtree.hierarchy import KnowledgeTree


def assignment(tree: KnowledgeTree, node_weights: sp.csr_matrix, level: int) -> np.ndarray:
    """Each row's heaviest node at ``level`` (a node id), -1 for a row with no weight there."""
    nodes = tree.nodes_at(level)
    w = sp.csr_matrix(node_weights)[:, nodes].tocsr()
    out = np.full(w.shape[0], -1, dtype=np.int64)
    has = np.diff(w.indptr) > 0
    if has.any():
        out[has] = nodes[np.asarray(w[has].argmax(axis=1)).ravel()]
    return out


def purity(pred, truth) -> float:
    """Share of rows whose cluster's majority label is their own label."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if len(pred) == 0:
        return 0.0
    total = 0
    for c in np.unique(pred):
        total += Counter(truth[pred == c].tolist()).most_common(1)[0][1]
    return total / len(pred)


def nmi(pred, truth) -> float:
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(np.asarray(truth), np.asarray(pred)))


def flat_anchor(embeddings: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means labels of the L2-normalised instance embeddings (scikit-learn, 10 inits)."""
    from sklearn.cluster import KMeans

    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    k = max(1, min(int(k), len(x)))
    return KMeans(k, n_init=10, random_state=seed).fit_predict(x)


def labels_covered(labels, rows) -> int:
    labels = np.asarray(labels)
    return int(len(set(labels[np.asarray(rows, dtype=np.int64)].tolist())))


def label_entropy(labels, rows) -> float:
    """Entropy (nats) of the selection's label distribution divided by log(labels in the pool):
    1 is an even spread over every label."""
    labels = np.asarray(labels)
    n_pool = len(set(labels.tolist()))
    sel = labels[np.asarray(rows, dtype=np.int64)]
    if len(sel) == 0 or n_pool < 2:
        return 0.0
    p = np.array(list(Counter(sel.tolist()).values()), dtype=np.float64)
    p /= p.sum()
    return float(-(p * np.log(p)).sum() / np.log(n_pool))


def label_share(labels, rows, wanted: set) -> float:
    """Share of the rows whose label is in ``wanted`` (all rows when ``rows`` is None)."""
    labels = np.asarray(labels)
    sel = labels if rows is None else labels[np.asarray(rows, dtype=np.int64)]
    if len(sel) == 0:
        return 0.0
    return float(np.isin(sel, list(wanted)).mean())


def majority_labels(pred, truth, *, min_share: float = 0.5) -> dict[int, str]:
    """Each cluster's majority label when it holds more than ``min_share`` of the cluster's rows
    (a "clear majority"); clusters without one are left out."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    out: dict[int, str] = {}
    for c in np.unique(pred):
        label, count = Counter(truth[pred == c].tolist()).most_common(1)[0]
        if count > min_share * int((pred == c).sum()):
            out[int(c)] = str(label)
    return out


def naming_hits(node_names: dict[int, str], majority: dict[int, str], label_names: list[str],
                embed) -> dict[int, bool]:
    """For each node with a clear majority label: is that label's name the nearest label name (by
    cosine of ``embed``'s vectors) to the node's name? ``embed`` maps texts to L2-normalised rows.
    This asks whether a reader who knows the labels would recognise the node from its name."""
    nodes = [c for c in majority if c in node_names]
    if not nodes:
        return {}
    labels = sorted(set(label_names))
    lv = np.asarray(embed(labels))
    nv = np.asarray(embed([node_names[c] for c in nodes]))
    nearest = (nv @ lv.T).argmax(axis=1)
    return {c: labels[int(j)] == majority[c] for c, j in zip(nodes, nearest, strict=True)}
