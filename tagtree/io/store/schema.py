"""The DuckDB schema: every table of the pipeline, created by code and versioned.

Table flow: instances -> annotations -> tags/tag_aliases -> tag_embeddings -> trees/tree_nodes
+ tag_leaf -> instance_nodes -> scores -> selections -> exports; plus quarantine, runs,
landed_objects. Bump SCHEMA_VERSION and add a step to MIGRATIONS whenever a table changes.
"""

from __future__ import annotations

from collections.abc import Callable

SCHEMA_VERSION = 4

TABLES: dict[str, str] = {
    "meta": """
        CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
    # Datasets seen by ingest; role 'target' marks a target-domain sample, not part of the pool.
    "datasets": """
        CREATE TABLE IF NOT EXISTS datasets (
            name VARCHAR PRIMARY KEY, role VARCHAR NOT NULL DEFAULT 'pool', format VARCHAR,
            created_at TIMESTAMP DEFAULT current_timestamp)""",
    # One row per distinct content (id = hash of the normalised conversation). Uniqueness of id
    # is kept by the ingest's anti-join insert (single writer) instead of a PRIMARY KEY: the key's
    # index halved ingest throughput.
    "instances": """
        CREATE TABLE IF NOT EXISTS instances (
            id VARCHAR NOT NULL, dataset VARCHAR NOT NULL, format VARCHAR NOT NULL,
            instruction VARCHAR NOT NULL, response VARCHAR NOT NULL, system VARCHAR,
            -- raw: the original record as JSON text (VARCHAR: a JSON column re-parses every value
            -- on insert); the full conversation is re-derived from it when needed.
            n_turns INTEGER NOT NULL, raw VARCHAR NOT NULL,
            source_file VARCHAR NOT NULL, source_line BIGINT NOT NULL,
            ingested_at TIMESTAMP DEFAULT current_timestamp)""",
    # Every place an instance was seen (duplicates across files keep their provenance here).
    # No primary key: ingest replaces a file's rows as a whole, which is idempotent and avoids
    # maintaining a second index on the hot path.
    "instance_sources": """
        CREATE TABLE IF NOT EXISTS instance_sources (
            instance_id VARCHAR NOT NULL, dataset VARCHAR NOT NULL, source_file VARCHAR NOT NULL,
            source_line BIGINT NOT NULL)""",
    "quarantine": """
        CREATE TABLE IF NOT EXISTS quarantine (
            source_file VARCHAR NOT NULL, source_line BIGINT NOT NULL, dataset VARCHAR,
            field VARCHAR, reason VARCHAR NOT NULL, message VARCHAR NOT NULL, raw VARCHAR,
            quarantined_at TIMESTAMP DEFAULT current_timestamp,
            PRIMARY KEY (source_file, source_line))""",
    "runs": """
        CREATE TABLE IF NOT EXISTS runs (
            run_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, status VARCHAR NOT NULL,
            started_at TIMESTAMP, finished_at TIMESTAMP, config JSON, fingerprints JSON,
            timings JSON, metrics JSON)""",
    # Keyed by (instance, tagger fingerprint): a changed model/prompt/params re-annotates.
    "annotations": """
        CREATE TABLE IF NOT EXISTS annotations (
            instance_id VARCHAR NOT NULL, tagger VARCHAR NOT NULL, tags VARCHAR[],
            status VARCHAR NOT NULL, error VARCHAR, attempts INTEGER DEFAULT 1,
            prompt_tokens INTEGER DEFAULT 0, completion_tokens INTEGER DEFAULT 0,
            updated_at TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (instance_id, tagger))""",
    "taggers": """
        CREATE TABLE IF NOT EXISTS taggers (
            tagger VARCHAR PRIMARY KEY, description JSON,
            created_at TIMESTAMP DEFAULT current_timestamp)""",
    "batch_jobs": """
        CREATE TABLE IF NOT EXISTS batch_jobs (
            batch_id VARCHAR PRIMARY KEY, tagger VARCHAR NOT NULL, status VARCHAR NOT NULL,
            input_file_id VARCHAR, output_file_id VARCHAR, n_requests INTEGER,
            created_at TIMESTAMP DEFAULT current_timestamp, updated_at TIMESTAMP,
            -- tokens of the loaded results: billed at the Batch API's price (llm.batch_price_share)
            prompt_tokens BIGINT DEFAULT 0, completion_tokens BIGINT DEFAULT 0)""",
    # The canonical tags of a tree version and the raw -> canonical map its grounding follows
    # (the tree build writes both; grounding adds the aliases of raw tags new to the tree). Keyed
    # by tree version: a rebuild writes its own rows and an older tree keeps its tags.
    "tags": """
        CREATE TABLE IF NOT EXISTS tags (
            tree_version VARCHAR NOT NULL, tag VARCHAR NOT NULL, frequency BIGINT NOT NULL,
            PRIMARY KEY (tree_version, tag))""",
    "tag_aliases": """
        CREATE TABLE IF NOT EXISTS tag_aliases (
            tree_version VARCHAR NOT NULL, raw_tag VARCHAR NOT NULL, tag VARCHAR NOT NULL,
            PRIMARY KEY (tree_version, raw_tag))""",
    "tag_embeddings": """
        CREATE TABLE IF NOT EXISTS tag_embeddings (
            tag VARCHAR NOT NULL, embedder VARCHAR NOT NULL, vector FLOAT[] NOT NULL,
            PRIMARY KEY (tag, embedder))""",
    "instance_embeddings": """
        CREATE TABLE IF NOT EXISTS instance_embeddings (
            instance_id VARCHAR NOT NULL, embedder VARCHAR NOT NULL, vector FLOAT[] NOT NULL,
            PRIMARY KEY (instance_id, embedder))""",
    # LLM names of tree clusters, keyed by model + prompt + the members shown: a rebuild asks
    # the model only about clusters whose members changed.
    "cluster_names": """
        CREATE TABLE IF NOT EXISTS cluster_names (
            key VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, description VARCHAR,
            created_at TIMESTAMP DEFAULT current_timestamp)""",
    "trees": """
        CREATE TABLE IF NOT EXISTS trees (
            tree_version VARCHAR PRIMARY KEY, created_at TIMESTAMP DEFAULT current_timestamp,
            config JSON, stats JSON)""",
    "tree_nodes": """
        CREATE TABLE IF NOT EXISTS tree_nodes (
            tree_version VARCHAR NOT NULL, node_id INTEGER NOT NULL, parent_id INTEGER,
            level INTEGER NOT NULL, name VARCHAR NOT NULL, description VARCHAR,
            size BIGINT NOT NULL, centroid FLOAT[], PRIMARY KEY (tree_version, node_id))""",
    "tag_leaf": """
        CREATE TABLE IF NOT EXISTS tag_leaf (
            tree_version VARCHAR NOT NULL, tag VARCHAR NOT NULL, leaf_id INTEGER NOT NULL,
            distance FLOAT, PRIMARY KEY (tree_version, tag))""",
    # No primary key: the grounding of a tree version is replaced as a whole in one transaction,
    # and the key's index made that insert ~20x slower (millions of rows per version).
    "instance_nodes": """
        CREATE TABLE IF NOT EXISTS instance_nodes (
            tree_version VARCHAR NOT NULL, instance_id VARCHAR NOT NULL, node_id INTEGER NOT NULL,
            weight FLOAT NOT NULL)""",
    "judgements": """
        CREATE TABLE IF NOT EXISTS judgements (
            instance_id VARCHAR NOT NULL, judge VARCHAR NOT NULL, rating FLOAT, status VARCHAR,
            error VARCHAR, prompt_tokens INTEGER DEFAULT 0, completion_tokens INTEGER DEFAULT 0,
            PRIMARY KEY (instance_id, judge))""",
    "scores": """
        CREATE TABLE IF NOT EXISTS scores (
            tree_version VARCHAR NOT NULL, instance_id VARCHAR NOT NULL, richness FLOAT,
            judge FLOAT, quality FLOAT NOT NULL, PRIMARY KEY (tree_version, instance_id))""",
    "selections": """
        CREATE TABLE IF NOT EXISTS selections (
            run_id VARCHAR NOT NULL, method VARCHAR NOT NULL, instance_id VARCHAR NOT NULL,
            rank INTEGER NOT NULL, gain FLOAT, PRIMARY KEY (run_id, method, instance_id))""",
    # Metrics of each method's selection in a run (sample / compare); the report reads them.
    "selection_metrics": """
        CREATE TABLE IF NOT EXISTS selection_metrics (
            run_id VARCHAR NOT NULL, method VARCHAR NOT NULL, metric VARCHAR NOT NULL,
            value DOUBLE, PRIMARY KEY (run_id, method, metric))""",
    "exports": """
        CREATE TABLE IF NOT EXISTS exports (
            run_id VARCHAR NOT NULL, uri VARCHAR NOT NULL, kind VARCHAR NOT NULL, rows BIGINT,
            sha256 VARCHAR, created_at TIMESTAMP DEFAULT current_timestamp,
            PRIMARY KEY (run_id, uri))""",
    # claimed_by/claimed_at: the on-upload run (Prefect flow run id, or a local id) that set
    # 'processing', and when (naive UTC); a later run takes over a claim whose run is gone.
    "landed_objects": """
        CREATE TABLE IF NOT EXISTS landed_objects (
            uri VARCHAR NOT NULL, etag VARCHAR NOT NULL, size BIGINT, status VARCHAR NOT NULL,
            first_seen TIMESTAMP DEFAULT current_timestamp, claimed_by VARCHAR,
            claimed_at TIMESTAMP, attempts INTEGER NOT NULL DEFAULT 0, error VARCHAR,
            PRIMARY KEY (uri, etag))""",
}


def _key_tags_by_tree_version(store) -> None:
    """Version 4: ``tags`` and ``tag_aliases`` gain ``tree_version`` (part of the key). Up to
    version 3 they held one global set, rewritten by every build and followed by the grounding
    on every tree; that set is kept as each stored tree's own, so every tree grounds and reports
    as it did before the upgrade (a store without trees drops it: the next build writes it)."""
    present = {r[0] for r in store.rows(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")}
    for table, cols in (("tags", "tag, frequency"), ("tag_aliases", "raw_tag, tag")):
        if table not in present:
            continue  # created in its new shape by the CREATE TABLEs
        have = {r[0] for r in store.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' "
            "AND table_name = ?", [table])}
        if "tree_version" in have:
            continue
        store.run(f"ALTER TABLE {table} RENAME TO {table}_v3")
        store.run(TABLES[table])
        if "trees" in present:
            store.run(f"INSERT INTO {table} (tree_version, {cols}) "
                      f"SELECT tr.tree_version, {cols} FROM {table}_v3 CROSS JOIN "
                      "(SELECT tree_version FROM trees) tr")
        store.run(f"DROP TABLE {table}_v3")


# N -> steps upgrading a database from version N-1 to N (SQL, or a function of the store for a
# step that must look first); run before the CREATE TABLEs above (IF EXISTS: a table a step
# alters may be missing; it is then created in its new shape).
MIGRATIONS: dict[int, list[str | Callable]] = {
    2: [
        "ALTER TABLE IF EXISTS landed_objects ADD COLUMN IF NOT EXISTS claimed_by VARCHAR",
        "ALTER TABLE IF EXISTS landed_objects ADD COLUMN IF NOT EXISTS claimed_at TIMESTAMP",
    ],
    # batch_jobs: tokens of a batch's answers; landed_objects.attempts: landing events sent
    # for the object version (each gets its own event id); error: why its last run failed.
    3: [
        "ALTER TABLE IF EXISTS batch_jobs ADD COLUMN IF NOT EXISTS prompt_tokens BIGINT DEFAULT 0",
        "ALTER TABLE IF EXISTS batch_jobs ADD COLUMN IF NOT EXISTS completion_tokens BIGINT "
        "DEFAULT 0",
        "ALTER TABLE IF EXISTS landed_objects ADD COLUMN IF NOT EXISTS attempts INTEGER "
        "DEFAULT 0",
        "ALTER TABLE IF EXISTS landed_objects ADD COLUMN IF NOT EXISTS error VARCHAR",
    ],
    4: [_key_tags_by_tree_version],
}
