"""`tagtree annotate`: tag every instance lacking tags for the current tagger."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tagtree.cli.common import ConfigOption, DbOption, console, settings


def register(app: typer.Typer) -> None:
    app.command(epilog="Examples: tagtree annotate --db pool.duckdb  (offline keyphrase tagger); "
                       "tagtree annotate --llm-base-url http://localhost:8000/v1 --llm-model "
                       "Qwen/Qwen2.5-7B-Instruct --concurrency 64 --db pool.duckdb")(annotate)


def annotate(
    llm_base_url: str = typer.Option(None, "--llm-base-url",
                                     help="OpenAI-compatible endpoint (env OPENAI_BASE_URL)."),
    llm_model: str = typer.Option(None, "--llm-model", help="Model name (env TAGTREE_LLM_MODEL)."),
    concurrency: int = typer.Option(None, "--concurrency", help="Requests in flight (default 16)."),
    mode: str = typer.Option(
        None, "--mode", help="online, or batch: the OpenAI Batch API (default online)."),
    tagger: str = typer.Option(
        None, "--tagger",
        help="Offline tagger without an endpoint: keyphrase or llm (default keyphrase)."),
    limit: int = typer.Option(None, "--limit", min=0,
                              help="Annotate at most this many now (batch mode: submit at most "
                              "this many requests)."),
    critic_rounds: int = typer.Option(
        None, "--critic-rounds", min=0, max=3,
        help="Act-critic refinement rounds, 0-3 (the paper: at most 3); each costs 2 more "
        "requests per instance; online mode only [annotate.critic_rounds: 0]."),
    show: int = typer.Option(3, "--show", help="Print this many tagged examples."),
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Extract atomic knowledge tags per instance; re-runs only request what is missing/failed."""
    from tagtree.io.store import Store
    from tagtree.stages.annotate import annotate as annotate_stage

    cfg = settings(config, {"store.db": db, "llm.base_url": llm_base_url, "llm.model": llm_model,
                            "annotate.concurrency": concurrency, "annotate.mode": mode,
                            "annotate.tagger": tagger, "annotate.critic_rounds": critic_rounds})
    bar = Progress(TextColumn("annotating"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=console, transient=True)
    task = bar.add_task("annotate", total=None)

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with Store(cfg.store.db) as store:
        console.print("starting the tagger...", style="dim")
        with bar:
            summary = annotate_stage(store, config=cfg, limit=limit, progress=progress)
        examples = store.tagged_examples(summary.tagger, show)
    console.print(summary.line, markup=False, highlight=False, soft_wrap=True)
    for reason, n in summary["failures"].items():
        console.print(f"  failed: {n:,} x {reason}", markup=False, highlight=False)
    for instruction, tags in examples:
        text = " ".join(instruction.split())
        console.print(f"  {text[:70]!r} -> {', '.join(tags)}", markup=False, highlight=False,
                      soft_wrap=True)
    console.print(f"tagger {summary.tagger}; see `tagtree stats --db {cfg.store.db}`")


def annotation_table(per_tagger: list[dict]):
    """`tagtree stats` section: tokens, failures and estimated cost per tagger fingerprint; the
    most frequent failure reasons go in the caption (a narrow terminal would cut a column)."""
    from rich.table import Table

    t = Table(title="annotations", caption_justify="left")
    t.add_column("tagger", overflow="fold", min_width=16)
    for name in ("ok", "failed", "attempts", "tokens in", "tokens out", "cost $"):
        t.add_column(name, justify="right")
    reasons = []
    for s in per_tagger:
        t.add_row(s["tagger"], f"{s['ok']:,}", f"{s['failed']:,}", f"{s['attempts']:,}",
                  f"{s['prompt_tokens']:,}", f"{s['completion_tokens']:,}",
                  f"{s['cost_usd']:,.2f}")
        if s["failures"]:
            listed = ", ".join(f"{r} ({n:,})" for r, n in s["failures"].items())
            reasons.append(f"{s['tagger']} failed: {listed}")
    t.caption = "\n".join(reasons) or None
    return t
