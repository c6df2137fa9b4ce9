"""Prefect flows that read like a table of contents: curate, refresh, on-upload, watch-bucket."""

from flows.logs import install as _install_log_filter

_install_log_filter()
