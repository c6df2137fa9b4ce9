"""Where the Prefect project is: the repository's ``flows/``, ``tasks/`` and ``deployments/``
folders (next to ``prefect.yaml``). They are not installed with the package -- generic
top-level names like ``tasks`` would collide with other projects in site-packages -- so the
commands that run flows or serve deployments import them from the checkout by path."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from tagtree.errors import TagtreeError

ENV = "TAGTREE_PROJECT"


def prefect_project() -> Path | None:
    """``$TAGTREE_PROJECT``, else the checkout this ``tagtree`` was imported from (a clone, or
    ``pip install -e .``); None when neither holds ``flows/curate.py`` and ``prefect.yaml``."""
    wanted = os.environ.get(ENV)
    root = Path(wanted).expanduser() if wanted else Path(__file__).resolve().parents[2]
    if (root / "flows" / "curate.py").is_file() and (root / "prefect.yaml").is_file():
        return root.resolve()
    if wanted:
        raise TagtreeError(f"{ENV}={wanted} is not a tagtree checkout (no flows/curate.py and "
                           "prefect.yaml there)")
    return None


def require_project() -> Path:
    """The Prefect project's folder, or a TagtreeError saying how to get one."""
    root = prefect_project()
    if root is None:
        raise TagtreeError(f"this command runs the Prefect project (flows/, tasks/, deployments/ "
                           f"of a tagtree checkout), which `pip install` does not install: run "
                           f"it from a clone, or set {ENV}=/path/to/tagtree")
    return root


def import_project(module: str) -> ModuleType:
    """Import ``flows.x`` / ``deployments.x`` from the Prefect project."""
    root = require_project()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(module)
