"""`tagtree curate`: the main entry point, running the Prefect `curate` flow in-process."""

from __future__ import annotations

from pathlib import Path

import typer

from tagtree.cli.common import (
    ConfigOption,
    DbOption,
    console,
    err_console,
    quiet_prefect,
    settings,
)


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Example: tagtree curate examples/self_instruct_alpaca.jsonl "
        "--target examples/target_coding_math.jsonl --budget 0.05 --out out/; "
        "tagtree curate data/ --split train --out sel.jsonl --format llamafactory"
    )(curate)


def curate(
    inputs: list[Path] = typer.Argument(
        ..., help="Instruction data: JSONL/JSON/Parquet files, or Hugging Face dataset "
        "directories (save_to_disk or Hub-style Parquet folders)."),
    target: Path = typer.Option(None, "--target", help="Target-domain sample to align to."),
    budget: str = typer.Option(
        None, "--budget", "-b", help="Fraction (0.05) or count (5000) to select [0.05]."
    ),
    method: str = typer.Option(
        None, "--method", help="tags|random|instag|deita|kcenter|quality [tags]."
    ),
    out: str = typer.Option(
        None, "--out", "-o", help="Where the selection goes. A path with a file extension "
        "(sel.jsonl, sel.parquet) is the data file, with the manifest and report beside it "
        "(sel.manifest.json, sel.report.html); a path without one is a directory holding "
        "selection.*, the manifest and report.html [out]."
    ),
    fmt: str = typer.Option(
        None, "--format", "-f", help="Export format: auto (one training file: records as they "
        "came in, or chat messages when inputs mix formats) | input (one file per input "
        "format) | jsonl | parquet | hf | llamafactory | axolotl [auto]."),
    input_format: str = typer.Option(
        None, "--input-format", help="Force the input format "
        "alpaca|sharegpt|openai|dolly|prompt_response|turns [auto]."),
    split: str = typer.Option(
        None, "--split", help="Split to read from a Hugging Face dataset directory with "
        "several [the only one, else train]."),
    tagger: str = typer.Option(
        None, "--tagger", help="Offline tagger when no endpoint is set: keyphrase|llm."
    ),
    llm_base_url: str = typer.Option(
        None, "--llm-base-url", help="OpenAI-compatible endpoint [env OPENAI_BASE_URL]."
    ),
    llm_model: str = typer.Option(None, "--llm-model", help="Model name [env TAGTREE_LLM_MODEL]."),
    seed: int = typer.Option(None, "--seed", help="Random seed for tree and sampling [0]."),
    prefect: bool = typer.Option(
        None, "--prefect/--no-prefect", help="Run the Prefect `curate` flow (needs the "
        "Prefect project of a checkout) or the same stages as plain calls [the flow when the "
        "project is found]."),
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Run every stage: ingest, annotate, tree, ground, score, sample, export, report.

    Runs the Prefect `curate` flow in ephemeral mode: no server needed (or, with --no-prefect
    or without the Prefect project, tagtree.curate()). Finished stages are kept in the store, so
    an interrupted run resumes where it stopped.
    """
    from tagtree.formats import FORMATS as INPUT_FORMATS

    if fmt in INPUT_FORMATS:  # the old meaning of --format: still understood
        err_console.print(f"note: --format {fmt} names an input format; use --input-format "
                          f"{fmt} (--format is the export format)", highlight=False)
        input_format, fmt = fmt, None
    overrides = {
        "ingest.format": input_format,
        "ingest.split": split,
        "export.format": fmt,
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
    from tagtree.cli.common import hide_user_error_tracebacks, keep_out_of_parameters
    from tagtree.io.ingest import check_inputs

    # Unusable inputs fail here, in one line, before Prefect starts (item 6 of issue 16).
    check_inputs([*inputs, *([target] if target else [])], cfg.ingest.format)
    from tagtree.cli.project import import_project, prefect_project, require_project

    if prefect is None:
        prefect = prefect_project() is not None
    if not prefect:
        return _curate_library(inputs, target, cfg)
    require_project()
    quiet_prefect()
    keep_out_of_parameters(overrides, "llm.base_url")
    from tagtree.cli.lifeline import exit_on_sigterm, hold

    hold()  # the ephemeral server and other helpers die with this command, even on SIGKILL
    exit_on_sigterm()
    console.print(f"curating {len(inputs)} file(s) into {cfg.store.db}: ingest, annotate, tree, "
                  "ground, score, sample, export, report ...", highlight=False)
    curate_flow = import_project("flows.curate").curate
    with_runner = import_project("flows.runners").with_runner
    from tagtree.cli.summary import print_summary

    hide_user_error_tracebacks()

    # The store is this run's from start to end: a second curate is refused now, not after its
    # first stages, and cannot interleave between ours (the flow opens the store per task).
    from tagtree.cli.common import restore_environment
    from tagtree.io.runlock import run_lock
    from tagtree.io.store import Store

    with run_lock(cfg.store.db, "tagtree curate"), _finally(restore_environment):
        with Store(cfg.store.db) as store:
            store.interrupt_stale_runs()  # 'running' rows of killed runs: nobody else runs now
        result = with_runner(curate_flow, cfg.runner)(  # runner.runner: thread, dask, ray
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


def _curate_library(inputs: list[Path], target: Path | None, cfg) -> None:
    """The same stages without Prefect: ``tagtree.curate()`` in this process."""
    from tagtree.cli.lifeline import exit_on_sigterm, hold
    from tagtree.cli.summary import print_summary
    from tagtree.io.runlock import run_lock
    from tagtree.io.store import Store
    from tagtree.stages.curate import curate as curate_stages

    hold()  # a local model server dies with this command, even on SIGKILL
    exit_on_sigterm()
    console.print(f"curating {len(inputs)} file(s) into {cfg.store.db} (no Prefect): ingest, "
                  "annotate, tree, ground, score, sample, export, report ...", highlight=False)
    with run_lock(cfg.store.db, "tagtree curate"):
        with Store(cfg.store.db) as store:
            store.interrupt_stale_runs()
        result = curate_stages(cfg.store.db, inputs, config=cfg, target=target,
                               log=lambda line: err_console.print(line, style="dim",
                                                                  markup=False,
                                                                  highlight=False))
    print_summary(result.to_dict(), console)


class _finally:
    """Run ``fn`` when the block ends, however it ends."""

    def __init__(self, fn):
        self.fn = fn

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fn()
        return False
