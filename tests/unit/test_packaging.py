"""`pip install .` installs the library only; the CLI finds the Prefect project by path."""

from __future__ import annotations

import tomllib

import pytest

from tagtree.errors import TagtreeError
from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_only_the_tagtree_package_is_installed():
    from setuptools import find_packages

    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(str(REPO), include=find["include"], exclude=find.get("exclude", ()))
    assert {p.split(".")[0] for p in packages} == {"tagtree"}
    assert {"tagtree.stages", "tagtree.io.store", "tagtree.cli"} <= set(packages)


def test_license_is_an_spdx_expression():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"


def test_the_cli_finds_the_prefect_project_of_its_checkout(monkeypatch):
    from tagtree.cli.project import import_project, prefect_project

    monkeypatch.delenv("TAGTREE_PROJECT", raising=False)
    assert prefect_project() == REPO.resolve()
    assert import_project("flows.curate").curate.name == "curate"


def test_a_project_path_without_the_flows_is_refused(monkeypatch, tmp_path):
    from tagtree.cli.project import import_project

    monkeypatch.setenv("TAGTREE_PROJECT", str(tmp_path))
    with pytest.raises(TagtreeError, match="not a tagtree checkout"):
        import_project("flows.curate")


def test_the_test_extra_installs_the_hf_extra():
    """The Hugging Face tests use the real `datasets` (they fail, never skip, without it), so
    the test extra (`make test`, CI) must install whatever the optional `hf` extra does."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(r.startswith("datasets") for r in extras["hf"])
    assert set(extras["hf"]) <= set(extras["test"])
    assert not any(r.startswith("datasets") for r in PYPROJECT["project"]["dependencies"])
