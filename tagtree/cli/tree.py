"""`tagtree tree build|ground|show|export`."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import typer
from rich.tree import Tree

from tagtree.cli.common import ConfigOption, DbOption, console, settings
from tagtree.errors import TagtreeError

tree_app = typer.Typer(help="Build, ground, show and export the knowledge tree.",
                       no_args_is_help=True)
LEVEL_COLOURS = ("green", "cyan", "magenta", "yellow", "blue", "red", "white")
VersionOption = typer.Option(None, "--version", "-v", help="Tree version [latest built].")


def register(app: typer.Typer) -> None:
    app.add_typer(tree_app, name="tree")


@tree_app.command(epilog="Example: tagtree tree build --db pool.duckdb --seed 1")
def build(
    tagger: str = typer.Option(None, "--tagger", help="Tagger fingerprint [most used]."),
    seed: int = typer.Option(None, "--seed", help="Random seed [tree.seed]."),
    llm: bool = typer.Option(None, "--llm/--no-llm", help="Refine names with the LLM."),
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Normalize and embed the tags, cluster them bottom-up into a named tree, ground instances."""
    from tagtree.io.store import Store
    from tagtree.stages.ground import ground
    from tagtree.stages.resources import Resources
    from tagtree.stages.tree import build_tree

    cfg = settings(config, {"store.db": db, "tree.tagger": tagger, "tree.seed": seed,
                            "tree.refine_with_llm": llm})
    resources = Resources()  # one embedder for both stages
    with Store(cfg.store.db) as store, console.status("building the tree..."):
        built = build_tree(store, config=cfg, resources=resources)
        grounded = ground(store, config=cfg, resources=resources,
                          tree_version=built["tree_version"])
    reused = " (unchanged input: reused)" if built["reused"] else ""
    console.print(
        f"tree [bold]{built['tree_version']}[/]{reused}: {built['n_tags']:,} tags "
        f"({built['raw_tags']:,} raw, {built['merged']:,} near-duplicates merged) -> levels "
        f"{' > '.join(f'{n:,}' for n in built['levels'])}; grounded {grounded['instances']:,} "
        f"instances, drift {grounded['drift']:.1%}", highlight=False)
    if built.figures.get("refine"):
        r = built.figures["refine"]
        console.print(f"LLM names: {r['named']:,} new, {r['cached']:,} from earlier builds, "
                      f"{r['failed']:,} kept their offline name (no usable answer), "
                      f"{r.get('rejected', 0):,} (the answer fit the members worse)"
                      + (" - the endpoint kept failing, the rest were not asked"
                         if r["gave_up"] else ""), highlight=False)
    console.print(f"next: tagtree tree show --db {cfg.store.db}", style="dim")


@tree_app.command("ground", epilog="Example: tagtree tree ground --db pool.duckdb")
def ground_cmd(version: str = VersionOption, db: str = DbOption,
               config: str = ConfigOption) -> None:
    """Place instances (new ones too) on an existing tree without rebuilding; report drift."""
    from tagtree.stages.ground import ground

    cfg = settings(config, {"store.db": db})
    g = ground(cfg.store.db, config=cfg, tree_version=version)
    console.print(f"grounded {g['instances']:,} instances on tree {g['tree_version']}; "
                  f"{g['new_tags']:,} new tags placed on existing leaves; drift "
                  f"{g['drift']:.1%}", highlight=False)
    if g["rebuild_advised"]:
        console.print(f"[yellow]drift above tree.drift_threshold={cfg.tree.drift_threshold}: "
                      "rebuild with `tagtree tree build`[/]")


def _load(db: str | None, config: str | None, version: str | None):
    from tagtree.io.store import Store

    cfg = settings(config, {"store.db": db})
    with Store(cfg.store.db, read_only=True) as store:
        tree = store.load_tree(version)
        counts = store.node_instance_counts(tree.version)
    return tree, counts


@tree_app.command(epilog="Example: tagtree tree show --depth 2 --node 412")
def show(
    depth: int = typer.Option(2, "--depth", "-d", min=0, help="Levels shown below the start."),
    node: int = typer.Option(None, "--node", "-n", help="Start at this node id [the roots]."),
    max_children: int = typer.Option(12, "--max-children", min=1,
                                     help="Children shown per node (largest first)."),
    version: str = VersionOption,
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Print the tree with tag and instance counts per node."""
    tree, counts = _load(db, config, version)
    if node is not None and not 0 <= node < tree.n_nodes:
        raise TagtreeError(f"no node {node}: ids run from 0 to {tree.n_nodes - 1}")
    title = (f"[bold]tree {tree.version}[/]: {tree.n_nodes:,} nodes, {tree.n_leaves:,} leaves, "
             f"{tree.depth} levels")
    root = Tree(title)
    children = {}
    for i, p in enumerate(tree.parent.tolist()):
        children.setdefault(p, []).append(i)

    def label(i: int) -> str:
        colour = LEVEL_COLOURS[min(int(tree.level[i]), len(LEVEL_COLOURS) - 1)]
        inst = f", {counts[i]:,} instances" if i in counts else ""
        return (f"[{colour} bold]{_escape(tree.name[i])}[/] [dim]#{i} L{tree.level[i]} "
                f"({int(tree.size[i]):,} tags{inst})[/]")

    def add(parent_branch: Tree, ids: list[int], remaining: int) -> None:
        ids = sorted(ids, key=lambda i: (-counts.get(i, 0), -int(tree.size[i]), i))
        for i in ids[:max_children]:
            branch = parent_branch.add(label(i))
            if remaining > 0:
                add(branch, children.get(i, []), remaining - 1)
        if len(ids) > max_children:
            parent_branch.add(f"[dim]... {len(ids) - max_children} more[/]")

    start = [node] if node is not None else children.get(-1, [])
    add(root, start, depth)
    console.print(root)
    if node is not None and tree.description[node]:
        console.print(f"[dim]{_escape(tree.description[node])}[/]")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@tree_app.command(epilog="Example: tagtree tree export --format csv --out tree.csv")
def export(
    fmt: str = typer.Option("json", "--format", "-f",
                            help="json (nested) or csv (one row per node)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output file [stdout]."),
    version: str = VersionOption,
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Write the tree as nested JSON or a flat CSV of nodes."""
    if fmt not in ("json", "csv"):
        raise TagtreeError(f"--format must be json or csv, got {fmt!r}")
    tree, counts = _load(db, config, version)
    text = export_json(tree, counts) if fmt == "json" else export_csv(tree, counts)
    if out is None:
        sys.stdout.write(text)
    else:
        from tagtree.io.atomic import write_text_atomic

        write_text_atomic(out, text)
        console.print(f"wrote {out} ({tree.n_nodes:,} nodes)")


def _node_dict(tree, counts, i: int) -> dict:
    return {"id": i, "name": tree.name[i], "description": tree.description[i],
            "level": int(tree.level[i]), "tags": int(tree.size[i]),
            "instances": int(counts.get(i, 0))}


def export_json(tree, counts: dict) -> str:
    nodes = [_node_dict(tree, counts, i) | {"children": []} for i in range(tree.n_nodes)]
    roots = []
    for i, p in enumerate(tree.parent.tolist()):
        (nodes[p]["children"] if p >= 0 else roots).append(nodes[i])
    doc = {"version": tree.version, "roots": roots}
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


def export_csv(tree, counts: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["node_id", "parent_id", "level", "name", "description", "tags", "instances"])
    for i in range(tree.n_nodes):
        p = int(tree.parent[i])
        w.writerow([i, "" if p < 0 else p, int(tree.level[i]), tree.name[i], tree.description[i],
                    int(tree.size[i]), int(counts.get(i, 0))])
    return buf.getvalue()
