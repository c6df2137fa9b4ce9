"""Prefect tasks: one module per stage, each a decorator (retries, timeouts, tags, cache policy)
and one call into ``tagtree.stages`` (or ``tagtree.io`` for the cluster shard tasks).

Tasks take names (a db path, the config as a dict, versions) and return the stage's small JSON
summary -- never connections or data frames. Not installed with the package: this folder is part
of the Prefect project at the repository's root (see prefect.yaml).
"""
