"""The `tagtree` command: thin, one library call per command, clear errors without tracebacks.

Each stage's commands live in a module of this package with a ``register(app)`` function; the
modules are found by name so a new stage only adds its file.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import typer

from tagtree import __version__
from tagtree.errors import TagtreeError, user_message
from tagtree.sanitize import printable

# Order is the order of `tagtree --help`.
COMMAND_MODULES = ("curate", "ingest", "annotate", "embed", "tree", "score", "sample", "export",
                   "report", "orchestrate", "config_cmd")

app = typer.Typer(
    name="tagtree",
    help="Select the best instruction-tuning data through a knowledge tree (TAGS).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help texts carry defaults in brackets ("[auto]"): with rich markup on, "[auto]" and the
    # like were taken for style tags and vanished from --help.
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tagtree {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


for _name in COMMAND_MODULES:
    if importlib.util.find_spec(f"tagtree.cli.{_name}") is not None:
        importlib.import_module(f"tagtree.cli.{_name}").register(app)


def main() -> None:
    try:
        app()
    except TagtreeError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - a full disk is the user's to fix; bugs re-raise
        message = user_message(exc)
        if message is None:
            raise
        print(f"error: {printable(message)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept in the store; re-run to resume", file=sys.stderr)
        sys.exit(130)
