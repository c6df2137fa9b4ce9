"""The README documents every CLI command and every configuration knob."""

import re

import typer.main

from tagtree.cli import app
from tagtree.config import knobs

from ..conftest import REPO


def command_paths(group, prefix="tagtree"):
    for name, cmd in group.commands.items():
        path = f"{prefix} {name}"
        if hasattr(cmd, "commands"):
            yield from command_paths(cmd, path)
        else:
            yield path


def test_every_cli_command_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    missing = [p for p in command_paths(typer.main.get_command(app)) if f"`{p}" not in readme]
    assert not missing, f"commands missing from README: {missing}"


def test_every_knob_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    missing = [k for k, _, _ in knobs() if not re.search(rf"`{re.escape(k)}`", readme)]
    assert not missing, f"knobs missing from README: {missing}"


def test_readme_configuration_reference_is_in_sync():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "sync_readme", REPO / "scripts" / "sync_readme.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert module.synced(text) == text, "run: python scripts/sync_readme.py"
