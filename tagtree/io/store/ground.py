"""Store queries of the ground stage: tag_leaf rows for tags new to a tree, instance_nodes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp


class GroundQueries:
    def add_tag_leaves(self, version: str, tags: list[str], leaf: np.ndarray,
                       similarity: np.ndarray) -> int:
        """Incremental grounding: map new canonical tags onto existing leaves of ``version``."""
        table = pa.table({"tree_version": [version] * len(tags), "tag": tags,
                          "leaf_id": pa.array(leaf, pa.int32()),
                          "distance": pa.array(1.0 - np.asarray(similarity), pa.float32())})
        return self.insert_arrow("tag_leaf", table)

    def unmapped_canonical_tags(self, version: str, tagger: str) -> list[str]:
        """Canonical tags (through ``version``'s aliases) of the tagger's annotations that the
        tree has no leaf for yet."""
        return [r[0] for r in self.rows(
            "SELECT DISTINCT al.tag FROM annotations a, unnest(a.tags) AS t(raw) "
            "JOIN tag_aliases al ON al.tree_version = ? AND al.raw_tag = t.raw "
            "LEFT JOIN tag_leaf tl ON tl.tree_version = ? AND tl.tag = al.tag "
            "WHERE a.status = 'ok' AND a.tagger = ? AND tl.tag IS NULL ORDER BY 1",
            [version, version, tagger])]

    def instance_tag_leaves(self, version: str, tagger: str):
        """(instance_id, leaf_id, distance) per tag occurrence of the tagger's usable
        annotations (no ORDER BY: callers index instances with Arrow's hash kernels)."""
        return self.arrow(
            "SELECT a.instance_id, tl.leaf_id, tl.distance FROM annotations a, "
            "unnest(a.tags) AS t(raw) "
            "JOIN tag_aliases al ON al.tree_version = ? AND al.raw_tag = t.raw "
            "JOIN tag_leaf tl ON tl.tree_version = ? AND tl.tag = al.tag "
            "WHERE a.status = 'ok' AND a.tagger = ?", [version, version, tagger])

    def write_instance_nodes(self, version: str, instance_ids: list[str],
                             weights: sp.csr_matrix) -> int:
        """Replace the grounding of ``version`` with the non-zero (instance, node) weights."""
        coo = weights.tocoo()
        ids = pa.array(instance_ids, pa.string())
        table = pa.table({"tree_version": pa.array([version] * coo.nnz, pa.string()),
                          "instance_id": ids.take(pa.array(coo.row, pa.int64())),
                          "node_id": pa.array(coo.col, pa.int32()),
                          "weight": pa.array(coo.data, pa.float32())})
        with self.transaction():
            self.run("DELETE FROM instance_nodes WHERE tree_version = ?", [version])
            # Plain INSERT: the version's rows were just deleted, so no conflict checks needed.
            self.con.register("_instance_nodes", table)
            try:
                self.run("INSERT INTO instance_nodes SELECT * FROM _instance_nodes")
            finally:
                self.con.unregister("_instance_nodes")
        return coo.nnz

    def node_instance_counts(self, version: str) -> dict[int, int]:
        """Instances grounded on each node of tree ``version``."""
        return dict(self.rows("SELECT node_id, count(*) FROM instance_nodes "
                              "WHERE tree_version = ? GROUP BY 1", [version]))

    def instance_leaf_matrix(self, version: str | None = None,
                             instance_ids: list[str] | None = None):
        """(instance ids, (n_instances x n_leaves) CSR of leaf weights) for ``version``; rows in
        ``instance_ids`` order when given (instances without grounding get empty rows)."""
        version = self._version_or_latest(version)
        n_leaves = self.scalar("SELECT count(*) FROM tree_nodes WHERE tree_version = ? "
                               "AND level = 0", [version])
        t = self.arrow("SELECT n.instance_id, n.node_id, n.weight FROM instance_nodes n "
                       "JOIN tree_nodes tn ON tn.tree_version = n.tree_version "
                       "AND tn.node_id = n.node_id WHERE n.tree_version = ? AND tn.level = 0 "
                       "ORDER BY n.instance_id, n.node_id", [version])
        got = t.column("instance_id").to_pylist()
        ids = instance_ids if instance_ids is not None else list(dict.fromkeys(got))
        pos = {iid: i for i, iid in enumerate(ids)}
        rows = np.array([pos.get(i, -1) for i in got], dtype=np.int64)
        keep = rows >= 0
        m = sp.csr_matrix((t.column("weight").to_numpy()[keep],
                           (rows[keep], t.column("node_id").to_numpy()[keep])),
                          shape=(len(ids), n_leaves), dtype=np.float32)
        return ids, m
