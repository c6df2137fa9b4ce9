"""`prefect deploy --all` against a running server registers the four deployments of
prefect.yaml with their schedules, trigger and concurrency (inspected through the client)."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from tests.e2e.conftest import PREFECT, REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _deployments(api: str) -> dict:
    from prefect.client.orchestration import PrefectClient

    async def read():
        async with PrefectClient(api) as client:
            out = {}
            for dep in await client.read_deployments():
                flow = await client.read_flow(dep.flow_id)
                out[f"{flow.name}/{dep.name}"] = dep
            return out, await client.read_automations()

    return asyncio.run(read())


def test_deploy_all_registers_four_deployments(prefect_server):
    env = prefect_server["env"]
    run = lambda *args: subprocess.run([PREFECT, *args], cwd=REPO, env=env, text=True,  # noqa: E731
                                       capture_output=True, timeout=300)
    created = run("work-pool", "create", "tagtree-process", "--type", "process",
                  "--overwrite")
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = run("--no-prompt", "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    deployments, automations = _deployments(prefect_server["api"])
    assert set(deployments) >= {"curate/curate", "refresh/refresh",
                                "watch-bucket/watch-bucket", "on-upload/on-upload"}
    refresh = deployments["refresh/refresh"]
    assert [s.schedule.cron for s in refresh.schedules] == ["0 3 * * *"]
    watch = deployments["watch-bucket/watch-bucket"]
    assert [s.schedule.interval.total_seconds() for s in watch.schedules] == [60]
    on_upload = deployments["on-upload/on-upload"]
    assert on_upload.global_concurrency_limit.limit == 1
    assert all(d.work_pool_name == "tagtree-process" for d in deployments.values())
    # The trigger is an automation running on-upload with parameters templated from the event.
    landed = [a for a in automations if "tagtree.object.landed" in a.trigger.expect]
    assert len(landed) == 1
    action = landed[0].actions[0]
    assert action.deployment_id == on_upload.id
    assert action.parameters == {"uri": "{{ event.payload.uri }}",
                                 "etag": "{{ event.payload.etag }}"}
