"""The benchmarks' store reads (tagtree.io.store.bench) on the report fixture's real store."""

from __future__ import annotations

import orjson

from tagtree.io.store import Store, bench


def test_benchmark_reads(report_db):
    with Store(report_db, read_only=True) as store:
        first = bench.first_instances(store, 5)
        raw = bench.raw_by_id(store)
        assert len(first) == 5 and all(iid in raw for iid, _, _ in first)
        assert orjson.loads(raw[first[0][0]])  # the input record, as JSON text
        assert len(bench.first_tags(store, 3)) == 3
        assert bench.tag_occurrences(store) == sum(
            len(t) for (t,) in store.rows("SELECT tags FROM annotations"))
        version = store.latest_tree_version()
        leaves = bench.leaf_of_tag(store, version)
        assert leaves and set(leaves) <= set(bench.first_tags(store, 10**6))
        tops = {n for (n,) in store.rows("SELECT node_id FROM tree_nodes WHERE tree_version = ? "
                                         "AND parent_id IS NULL", [version])}
        assignment = bench.top_level_assignment(store, version)
        assert assignment and set(assignment.values()) <= tops
        counts = bench.integrity_counts(store)
        assert counts["instances"] == store.count("instances")
        assert counts["dup_instances"] == counts["dup_annotations"] == 0
