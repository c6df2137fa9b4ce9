"""Embed task: annotations -> tag_embeddings (``tagtree.stages.embed``)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tagtree.stages.embed import run_embed


@task(name="embed-tags", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=10,
      timeout_seconds=4 * 3600)
def embed_tags(db: str, cfg: dict, tagger: str | None = None) -> dict:
    """annotations -> tag_embeddings for the folded tags still without a vector (shards of
    20K, each written when done: a retry resumes). ``build_tree`` then finds them cached."""
    return run_embed(db, cfg, tagger)
