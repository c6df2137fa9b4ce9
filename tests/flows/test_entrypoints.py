"""prefect.yaml is consistent with the code: every entrypoint imports as a flow of the same name,
and deployments/serve.py serves the same schedules and trigger."""

from __future__ import annotations

import importlib

import pytest
import yaml
from prefect import Flow

from tests.conftest import REPO

SPEC = yaml.safe_load((REPO / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in SPEC["deployments"]}


def test_four_deployments():
    assert set(DEPLOYMENTS) == {"curate", "refresh", "watch-bucket", "on-upload"}


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_entrypoint_imports_as_a_flow(name):
    path, func = DEPLOYMENTS[name]["entrypoint"].split(":")
    obj = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), func)
    assert isinstance(obj, Flow) and obj.name == name
    # Deployment parameters must be parameters of the flow.
    assert set(DEPLOYMENTS[name].get("parameters", {})) <= set(obj.parameters.properties)
    for trig in DEPLOYMENTS[name].get("triggers", []):
        assert set(trig["parameters"]) <= set(obj.parameters.properties)


def test_serve_matches_prefect_yaml():
    from deployments.serve import build_deployments

    served = {d.name: d for d in build_deployments("s3://bucket/landing/")}
    assert set(served) == set(DEPLOYMENTS)
    assert served["refresh"].schedules[0].schedule.cron == \
        DEPLOYMENTS["refresh"]["schedules"][0]["cron"]
    assert served["watch-bucket"].schedules[0].schedule.interval.total_seconds() == \
        DEPLOYMENTS["watch-bucket"]["schedules"][0]["interval"]
    yaml_trigger = DEPLOYMENTS["on-upload"]["triggers"][0]
    trigger = served["on-upload"].triggers[0]
    assert trigger.expect == set(yaml_trigger["expect"])
    assert trigger.match.root == yaml_trigger["match"]
    assert trigger.for_each == set(yaml_trigger["for_each"])
    assert trigger.parameters == yaml_trigger["parameters"]
    assert served["on-upload"].concurrency_limit == \
        DEPLOYMENTS["on-upload"]["concurrency_limit"]["limit"]
