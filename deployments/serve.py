"""Serve all four deployments (curate, refresh, watch-bucket, on-upload) in one local process.

    python -m deployments.serve --landing s3://bucket/landing/ --output-prefix s3://bucket/curated/

The same schedules and trigger as prefect.yaml, without a work pool or worker: runs start as
subprocesses of this process. Needs a Prefect server (PREFECT_API_URL), since events, schedules
and triggers live there.
"""

from __future__ import annotations

import argparse
import os

from prefect.events import DeploymentEventTrigger

LANDED_EVENT = "tagtree.object.landed"  # same as tasks.objects.LANDED_EVENT (no task import here)


def landing_trigger() -> DeploymentEventTrigger:
    return DeploymentEventTrigger(
        name="tagtree-object-landed",
        match={"prefect.resource.id": "tagtree.object.*"},
        expect={LANDED_EVENT},
        for_each={"prefect.resource.id"},
        posture="Reactive",
        threshold=1,
        within=0,
        parameters={"uri": "{{ event.payload.uri }}", "etag": "{{ event.payload.etag }}"},
    )


def build_deployments(landing: str, datasets: str | None = None, output_prefix: str | None = None,
                      interval_s: float = 60, cron: str = "0 3 * * *",
                      config_path: str | None = None) -> list:
    from flows.curate import curate
    from flows.on_upload import on_upload
    from flows.refresh import refresh
    from flows.watch_bucket import watch_bucket

    common = {"config_path": config_path} if config_path else {}
    outputs = {"output_prefix": output_prefix} if output_prefix else {}
    return [
        curate.to_deployment(name="curate", tags=["tagtree"], parameters={"inputs": []} | common),
        refresh.to_deployment(name="refresh", tags=["tagtree"], cron=cron, concurrency_limit=1,
                              parameters={"prefix": datasets or landing} | outputs | common),
        watch_bucket.to_deployment(name="watch-bucket", tags=["tagtree"], interval=interval_s,
                                   concurrency_limit=1,
                                   parameters={"prefix": landing} | common),
        # prefix: the watched prefix, so objects are named by their key below it (the same
        # names refresh gives them) and a run takes only objects landed there.
        on_upload.to_deployment(name="on-upload", tags=["tagtree"], concurrency_limit=1,
                                triggers=[landing_trigger()],
                                parameters={"uri": "", "prefix": landing} | outputs | common),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", required=True, help="prefix watch-bucket polls")
    parser.add_argument("--datasets", help="prefix refresh re-curates (default: --landing)")
    parser.add_argument("--output-prefix", help="where on-upload/refresh write results "
                        "(default: objects.output_prefix)")
    parser.add_argument("--interval", type=float, default=60, help="seconds between polls")
    parser.add_argument("--cron", default="0 3 * * *", help="refresh schedule (UTC)")
    parser.add_argument("--config", help="recipe file (TOML)")
    args = parser.parse_args(argv)
    serve_all(args.landing, args.datasets, args.output_prefix, args.interval, args.cron,
              args.config)


def serve_all(landing: str, datasets: str | None = None, output_prefix: str | None = None,
              interval_s: float = 60, cron: str = "0 3 * * *",
              config_path: str | None = None) -> None:
    from prefect import serve

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    serve(*build_deployments(landing, datasets, output_prefix, interval_s, cron, config_path))


if __name__ == "__main__":
    main()
