"""Prefect flows that read like a table of contents: curate, refresh, on-upload, watch-bucket."""
