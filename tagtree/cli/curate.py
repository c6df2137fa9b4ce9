"""`tagtree curate`: the main entry point, running the Prefect `curate` flow in-process."""

from __future__ import annotations

from pathlib import Path

import typer

from tagtree.cli.common import ConfigOption, DbOption, console, quiet_prefect, settings


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Example: tagtree curate examples/self_instruct_alpaca.jsonl "
        "--target examples/target_coding_math.jsonl --budget 0.05 --out out/"
    )(curate)


def curate(
    inputs: list[Path] = typer.Argument(..., help="Instruction data files (JSONL/JSON/Parquet)."),
    target: Path = typer.Option(None, "--target", help="Target-domain sample to align to."),
    budget: str = typer.Option(
        None, "--budget", "-b", help="Fraction (0.05) or count (5000) to select [0.05]."
    ),
    method: str = typer.Option(
        None, "--method", help="tags|random|instag|deita|kcenter|quality [tags]."
    ),
    out: str = typer.Option(
        None, "--out", "-o", help="Directory for selection, manifest and report [out]."
    ),
    fmt: str = typer.Option(None, "--format", "-f", help="Force the input format [auto]."),
    tagger: str = typer.Option(
        None, "--tagger", help="Offline tagger when no endpoint is set: keyphrase|llm."
    ),
    llm_base_url: str = typer.Option(
        None, "--llm-base-url", help="OpenAI-compatible endpoint [env OPENAI_BASE_URL]."
    ),
    llm_model: str = typer.Option(None, "--llm-model", help="Model name [env TAGTREE_LLM_MODEL]."),
    seed: int = typer.Option(None, "--seed", help="Random seed for tree and sampling [0]."),
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Run every stage: ingest, annotate, tree, ground, score, sample, export, report.

    Runs the Prefect `curate` flow in ephemeral mode: no server needed. Finished stages are kept
    in the store, so an interrupted run resumes where it stopped.
    """
    overrides = {
        "ingest.format": fmt,
        "annotate.tagger": tagger,
        "llm.base_url": llm_base_url,
        "llm.model": llm_model,
        "tree.seed": seed,
        "sample.seed": seed,
    }
    cfg = settings(
        config,
        overrides
        | {"store.db": db, "sample.budget": budget, "sample.method": method, "export.out": out},
    )
    quiet_prefect()
    from tagtree.cli.lifeline import exit_on_sigterm, hold

    hold()  # the ephemeral server and other helpers die with this command, even on SIGKILL
    exit_on_sigterm()
    console.print(f"curating {len(inputs)} file(s) into {cfg.store.db}: ingest, annotate, tree, "
                  "ground, score, sample, export, report ...", highlight=False)
    from flows.curate import curate as curate_flow
    from flows.runners import with_runner
    from tagtree.cli.summary import print_summary

    result = with_runner(curate_flow, cfg.runner)(  # runner.runner: thread, dask or ray
        inputs=[str(p) for p in inputs],
        target=str(target) if target else None,
        budget=cfg.sample.budget,
        method=cfg.sample.method,
        out=cfg.export.out,
        db=cfg.store.db,
        config_path=config,
        overrides={k: v for k, v in overrides.items() if v is not None},
    )
    print_summary(result, console)
