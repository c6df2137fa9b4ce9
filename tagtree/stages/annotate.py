"""Annotate stage: instances -> annotations (tags per instance, kept by tagger fingerprint)."""

from __future__ import annotations

from collections.abc import Callable

from tagtree.stages.common import as_config, open_store
from tagtree.stages.resources import Resources, resources_or_new
from tagtree.stages.results import AnnotateResult


def run_annotate(store, cfg, *, resources: Resources | None = None, limit: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Tag every pool and target instance lacking an ok annotation for the configured tagger
    (online, or the Batch API with ``annotate.mode = "batch"``); at most ``limit`` now."""
    from tagtree.io.annotator import annotate_store

    config = as_config(cfg)
    # A tagger or embedder handed in lives in this process only: worker processes build the
    # configured one, so they are used only when nothing was handed in.
    own = resources is None or resources.tags_as_configured()
    with open_store(store) as store, resources_or_new(resources).open_tagger(config) as tagger:
        if own:
            tagger = on_worker_processes(store, config, tagger, limit)
        if config.annotate.mode == "batch":
            from tagtree.io.batch import annotate_batch

            summary = annotate_batch(store, tagger, config, limit=limit, progress=progress)
        else:
            summary = annotate_store(store, tagger, page=config.annotate.batch_size,
                                     limit=limit, progress=progress)
    return summary.to_dict() | {"table": "annotations", "line": summary.line()}


def annotate(store, *, config=None, resources: Resources | None = None,
             limit: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> AnnotateResult:
    """``annotations`` for every instance still without an ok one for the tagger (the
    ``resources.tagger`` handed in, else the configured one); re-runs request only what is
    missing or failed. ``progress(done, total)`` is called as rows are written."""
    return AnnotateResult.of(run_annotate(store, config, resources=resources, limit=limit,
                                          progress=progress))


def on_worker_processes(store, config, tagger, limit: int | None = None):
    """``tagger`` itself, or run in worker processes (``annotate.processes``) when it is the
    CPU-bound keyphrase tagger on the local MiniLM and enough rows are pending."""
    from tagtree.io.annotate_processes import ProcessTagger, planned_processes
    from tagtree.io.annotator import uses_llm

    a = config.annotate
    if uses_llm(config) or a.mode != "online" or a.processes == 1 or \
            config.embed.backend != "local" or a.phrase_embedder != "embed":
        return tagger
    pending = store.annotation_counts(tagger.fingerprint)["pending"]
    processes = planned_processes(a.processes, pending if limit is None else min(limit, pending))
    if processes <= 1:
        return tagger
    return ProcessTagger(tagger, config.model_dump(mode="json"), processes)
