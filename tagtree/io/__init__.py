"""Adapters with I/O but no Prefect: DuckDB store, file readers/writers, model clients, S3."""
