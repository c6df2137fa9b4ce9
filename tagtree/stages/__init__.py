"""Stage functions: what each stage does end to end (read the store, call the core, write its
tables), with the clients passed in as ``Resources``. No Prefect here: the Prefect tasks in the
repository's ``tasks/`` are a decorator and one call into these modules.

One calling convention everywhere: ``stage(store, ..., config=None, resources=None)``, where
``store`` is an open ``tagtree.io.store.Store`` or the path of a DuckDB file, ``config`` a
``tagtree.config.Config``, a dict of one, a recipe path or None (the recipe in the working
directory, if any, and ``TAGTREE_*`` variables), and ``resources`` the embedder, tagger, chat
model and object store (built from the config on first use when not handed in). Each returns a
typed summary (``tagtree.stages.results``). The public names are re-exported by ``tagtree``.
"""
