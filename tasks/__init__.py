"""Prefect tasks: one module per stage, each a thin wrapper over ``tagtree`` functions.

Tasks read inputs by name from the store, call the core, write one output table and return a
small summary (counts, table names, content hashes) -- never connections or data frames.
"""
