"""Embed stage: annotations -> tag_embeddings for the folded tags still without a vector."""

from __future__ import annotations

from tagtree import normalize
from tagtree.errors import TagtreeError
from tagtree.stages.common import as_config, open_store
from tagtree.stages.resources import Resources, resources_or_new
from tagtree.stages.results import EmbedResult

EMBED_SHARD = 20_000  # tags embedded and written per shard: an interrupted run resumes from here


def pick_tagger(store, wanted: str | None) -> str:
    taggers = store.taggers_with_tags()
    if not taggers:
        raise TagtreeError("no usable annotations with tags (run `tagtree annotate` first)")
    if wanted is None:
        return taggers[0][0]
    if wanted not in {t for t, _ in taggers}:
        raise TagtreeError(f"no annotations by tagger '{wanted}'; have: "
                           + ", ".join(t for t, _ in taggers))
    return wanted


def embed_missing(store, embedder, tags: list[str], shard: int = EMBED_SHARD) -> int:
    """Embed the tags without a vector for this embedder, shard by shard; returns how many."""
    missing = store.tags_missing_embeddings(embedder.fingerprint, tags)
    for start in range(0, len(missing), shard):
        part = missing[start:start + shard]
        store.write_tag_embeddings(embedder.fingerprint, part, embedder.embed(part))
    return len(missing)


def run_embed(store, cfg, tagger: str | None = None, *,
              resources: Resources | None = None) -> dict:
    """Embed the folded tags of ``tagger`` (``tree.tagger``, else the most used) that have no
    vector for the embedder yet (shards of 20K, each written when done: a retry resumes)."""
    config = as_config(cfg)
    embedder = resources_or_new(resources).embedder_for(config)
    with open_store(store) as store:
        tagger = pick_tagger(store, tagger or config.tree.tagger)
        freq, alias = normalize.fold_counts(store.raw_tag_counts(tagger))
        freq, _ = normalize.filter_rare(freq, alias, config.tree.min_tag_freq)
        new = embed_missing(store, embedder, normalize.order_by_frequency(freq))
    return {"tagger": tagger, "embedder": embedder.fingerprint, "tags": len(freq),
            "embedded_new": new}


def embed(store, *, config=None, resources: Resources | None = None,
          tagger: str | None = None) -> EmbedResult:
    """``tag_embeddings`` for every folded tag of ``tagger`` still without a vector."""
    return EmbedResult.of(run_embed(store, config, tagger, resources=resources))
