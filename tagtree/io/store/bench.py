"""Benchmark reads (benchmarks/*.py): read-only queries the scripts print figures from.
Functions over a ``Store`` (not a mixin), so ``Store`` does not grow methods only scripts use."""

from __future__ import annotations


def first_instances(store, limit: int) -> list[tuple]:
    """(id, instruction, response) of up to ``limit`` instances."""
    return store.rows("SELECT id, instruction, response FROM instances LIMIT ?", [limit])


def raw_by_id(store) -> dict[str, str]:
    """Each instance's raw input record (JSON text), by id: where the benchmarks' labels are."""
    return dict(store.rows("SELECT id, raw FROM instances"))


def first_tags(store, limit: int) -> list[str]:
    return [r[0] for r in store.rows("SELECT tag FROM tags LIMIT ?", [limit])]


def tag_occurrences(store) -> int:
    """Tags over all annotations, repeats counted."""
    return int(store.scalar("SELECT coalesce(sum(len(tags)), 0) FROM annotations"))


def leaf_of_tag(store, tree_version: str) -> dict[str, int]:
    return dict(store.rows("SELECT tag, leaf_id FROM tag_leaf WHERE tree_version = ?",
                           [tree_version]))


def top_level_assignment(store, tree_version: str) -> dict[str, int]:
    """Each grounded instance's heaviest top-level node (ties: lowest id)."""
    rows = store.rows(
        "SELECT n.instance_id, n.node_id FROM instance_nodes n JOIN tree_nodes t "
        "ON t.tree_version = n.tree_version AND t.node_id = n.node_id WHERE n.tree_version = ? "
        "AND t.parent_id IS NULL ORDER BY n.instance_id, n.weight DESC, n.node_id",
        [tree_version])
    out: dict[str, int] = {}
    for iid, node in rows:
        out.setdefault(iid, node)
    return out


def integrity_counts(store) -> dict[str, int]:
    """What a killed-and-resumed run must not leave behind: duplicate rows, runs still marked
    running (benchmarks/sigkill.py)."""
    q = store.scalar
    return {
        "instances": q("SELECT count(*) FROM instances"),
        "dup_instances": q("SELECT count(*) - count(DISTINCT id) FROM instances"),
        "dup_annotations": q("SELECT count(*) - count(DISTINCT (instance_id, tagger)) "
                             "FROM annotations"),
        "annotated_ok": q("SELECT count(*) FROM annotations WHERE status = 'ok'"),
        "running_runs": q("SELECT count(*) FROM runs WHERE status = 'running'"),
    }
