"""`tagtree config show`: every knob, its value, where the value came from, what it means."""

from __future__ import annotations

import typer
from rich.table import Table

from tagtree.cli.common import ConfigOption, console

config_app = typer.Typer(help="Inspect the configuration (recipe file, env vars, defaults).",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("show", epilog="Example: tagtree config show --config tagtree.toml --toml")
def show(
    config: str = ConfigOption,
    toml: bool = typer.Option(False, "--toml", help="Print as a recipe file to save and diff."),
    markdown: bool = typer.Option(False, "--markdown",
                                  help="Print the defaults as a Markdown table (for the docs)."),
) -> None:
    """Print every knob with its current value, its source and its meaning."""
    from tagtree.config import env_name, knobs, knobs_markdown, load_config

    if markdown:
        print(knobs_markdown())
        return
    from tagtree.sanitize import scrub

    cfg, sources = load_config(config)
    data = scrub(cfg.model_dump())  # a user:pass@ in llm.base_url is not printed
    if toml:
        section = None
        for key, _default, help_ in knobs():
            sec, name = key.split(".")
            if sec != section:
                console.print(f"\n[{sec}]", markup=False)
                section = sec
            value = data[sec][name]
            console.print(f"# {help_}", markup=False, highlight=False)
            console.print(f"{'# ' if value is None else ''}{name} = {_toml(value)}",
                          markup=False, highlight=False)
        return
    t = Table("knob", "value", "source", "env var", "meaning", title="tagtree configuration")
    for key, _default, help_ in knobs():
        sec, name = key.split(".")
        t.add_row(key, repr(data[sec][name]), sources.get(key, "default"), env_name(key), help_)
    console.print(t)


def _toml(value) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)
