"""`tagtree serve`, `tagtree watch`, `tagtree refresh`: the orchestration flows from the shell."""

from __future__ import annotations

import time

import typer

from tagtree.cli.common import ConfigOption, DbOption, console, quiet_prefect, settings


def register(app: typer.Typer) -> None:
    app.command(epilog="Example: tagtree serve --landing s3://my-bucket/landing/ "
                       "--output-prefix s3://my-bucket/curated/")(serve)
    app.command(epilog="Example: tagtree watch s3://my-bucket/landing/ --once")(watch)
    app.command(epilog="Example: tagtree refresh s3://my-bucket/datasets/ "
                       "--output-prefix out/refresh")(refresh)


def serve(
    landing: str = typer.Option(..., "--landing", help="Prefix the watch-bucket flow polls."),
    datasets: str = typer.Option(None, "--datasets",
                                 help="Prefix refresh re-curates (default: the --landing prefix)."),
    output_prefix: str = typer.Option(
        None, "--output-prefix",
        help="Where on-upload and refresh write results (default: objects.output_prefix)."),
    interval: float = typer.Option(60, "--interval", help="Seconds between bucket polls."),
    cron: str = typer.Option("0 3 * * *", "--cron", help="Refresh schedule (UTC)."),
    config: str = ConfigOption,
) -> None:
    """Serve the curate, refresh, watch-bucket and on-upload deployments in this process
    (needs a Prefect server: `prefect server start`, PREFECT_API_URL)."""
    settings(config, {})  # fail early on a bad recipe
    quiet_prefect(console_logs=True)  # runs log at INFO: the stage lines reach the UI
    from tagtree.cli.project import import_project

    serve_all = import_project("deployments.serve").serve_all
    serve_all(landing, datasets, output_prefix, interval, cron, config)


def watch(
    prefix: str = typer.Argument(..., help="s3://bucket/prefix/ or a local directory."),
    once: bool = typer.Option(False, "--once", help="Poll once and exit."),
    interval: float = typer.Option(60, "--interval", help="Seconds between polls."),
    state_db: str = typer.Option(None, "--state-db",
                                 help="Landing state (default: objects.state_db)."),
    config: str = ConfigOption,
) -> None:
    """Record new or changed datasets under PREFIX and emit one landing event for each."""
    settings(config, {"objects.state_db": state_db})
    quiet_prefect()
    from tagtree.cli.project import import_project

    watch_bucket = import_project("flows.watch_bucket").watch_bucket

    while True:
        result = watch_bucket(prefix=prefix, state_db=state_db, config_path=config)
        console.print(f"{result['listed']} datasets under {prefix}; "
                      f"{result['emitted']} new landing events", markup=False, highlight=False)
        for uri in result["objects"]:
            console.print(f"  landed: {uri}", markup=False, highlight=False)
        if once:
            return
        time.sleep(interval)


def refresh(
    prefix: str = typer.Argument(..., help="s3://bucket/prefix/ or a local directory."),
    output_prefix: str = typer.Option(None, "--output-prefix",
                                      help="Where results go (default: objects.output_prefix)."),
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Re-curate every dataset under PREFIX into one store (only new instances cost requests)."""
    cfg = settings(config, {"store.db": db})
    quiet_prefect()
    from tagtree.cli.project import import_project

    refresh_flow = import_project("flows.refresh").refresh

    result = refresh_flow(prefix=prefix, output_prefix=output_prefix, db=cfg.store.db,
                          config_path=config)
    console.print(f"{result['datasets']} datasets curated; {len(result['outputs'])} files "
                  "written", markup=False, highlight=False)
    for uri in result["outputs"]:
        console.print(f"  {uri}", markup=False, highlight=False)
