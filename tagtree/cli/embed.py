"""`tagtree embed`: a vector for every folded tag still without one (tag_embeddings)."""

from __future__ import annotations

import typer

from tagtree.cli.common import ConfigOption, DbOption, console, settings


def register(app: typer.Typer) -> None:
    app.command(epilog="Example: tagtree embed --db pool.duckdb")(embed)


def embed(
    tagger: str = typer.Option(None, "--tagger", help="Tagger fingerprint [tree.tagger, else "
                               "the most used]."),
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Embed the folded tags that have no vector for the configured embedder yet.

    `tagtree tree build` embeds what is missing itself; run this to embed ahead of a build
    (shards of 20K are written as they finish, so an interrupted run resumes).
    """
    from tagtree.stages.embed import embed as embed_stage

    cfg = settings(config, {"store.db": db, "tree.tagger": tagger})
    with console.status("embedding..."):
        result = embed_stage(cfg.store.db, config=cfg)
    console.print(f"embedder {result.embedder}, tagger {result.tagger}: {result.tags:,} tags, "
                  f"{result.embedded_new:,} embedded now", markup=False, highlight=False,
                  soft_wrap=True)
