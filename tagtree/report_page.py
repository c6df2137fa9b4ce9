"""Report stage (render): the report-data dict (``tagtree.io.store.report``) -> one self-contained
HTML page (its own small SVG chart code inlined, no network, all data text escaped).

The page is ``tagtree/resources/report/page.html.j2`` (Jinja2, autoescape on) with the package's
``report.css``, ``report.js`` and ``charts.js`` inlined, so the output stays one file.

Safety: every value the template prints is HTML-escaped by Jinja2's autoescape; the data travels
as JSON inside a ``<script type="application/json">`` with ``<``, ``>`` and ``&`` written as
``\\u003c`` etc., so no ``</script>`` can close it; the page's JavaScript (and the chart code in
``charts.js``, ~15 KB: a sunburst, bars and lines as inline SVG, in place of plotly.js's 4.8 MB)
writes data text only through ``textContent``; a Content-Security-Policy with a per-page nonce
runs only the page's own two scripts and forbids every network request.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from importlib.resources import files
from typing import Any

import jinja2
import orjson
from markupsafe import Markup

_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)
_RESOURCES = "resources/report"


def _resource(name: str) -> str:
    return files("tagtree").joinpath(f"{_RESOURCES}/{name}").read_text(encoding="utf-8")


def chart_library() -> str:
    """The report's chart code (shipped with the package)."""
    return _resource("charts.js")


def render_report(data: dict[str, Any], *, chart_js: str | None = None) -> str:
    """The report page as one string. ``chart_js``: the chart code (default: the package's
    ``resources/report/charts.js``)."""
    if chart_js is None:
        chart_js = chart_library()
    payload = script_json(_compact(data))
    nonce = hashlib.sha256(payload.encode()).hexdigest()[:32]
    meta = data.get("meta", {})
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
           "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'; "
           "base-uri 'none'")
    return _environment().get_template("page.html.j2").render(
        csp=Markup(csp), nonce=nonce,  # constant text and a hex nonce
        title=f"tagtree report · {meta.get('run_id') or 'no run'}",
        meta=meta, cards=_cards(data), baselines=data.get("baselines", {}),
        manifest=data.get("manifest", {}),
        config=orjson.dumps(data.get("manifest", {}).get("config", {}),
                            option=orjson.OPT_INDENT_2).decode(),
        # The only unescaped parts: the package's own CSS and scripts ("</script" may not occur
        # inside a script, so it is broken up) and the payload, which has no '<', '>' or '&'.
        css=Markup(_resource("report.css")), payload=Markup(payload),
        chart_js=Markup(_script_text(chart_js)),
        page_js=Markup(_script_text(_resource("report.js")))) + "\n"


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("tagtree", _RESOURCES),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=False)
    env.filters.update(fmt=_fmt, text=_text, kv_rows=lambda m: [{"k": k, "v": v}
                                                                 for k, v in m.items()])
    return env


def _script_text(code: str) -> str:
    return _SCRIPT_END.sub(r"<\\/\1", code)


_NODE_COLUMNS = ("id", "parent", "level", "name", "size", "pool", "selected", "target",
                 "pool_mass", "pool_share", "selected_share", "target_share")


def _compact(data: dict) -> dict:
    """The tree's nodes as columns (no key repeated per node) plus the details of the nodes
    that have them: about half the bytes of one object per node."""
    tree = data.get("tree", {})
    nodes = tree.get("nodes", [])
    columns = {k: [n.get(k) for n in nodes] for k in _NODE_COLUMNS}
    details = {n["id"]: {"description": n.get("description", ""), "tags": n.get("tags", []),
                         "examples": n.get("examples", [])}
               for n in nodes if n.get("detail", True)}
    slim = {k: v for k, v in tree.items() if k != "nodes"} | {"columns": columns,
                                                                "details": details}
    return data | {"tree": slim}


def script_json(data: Any) -> str:
    """JSON safe to place inside a <script> element: no '<', '>' or '&' characters at all."""
    text = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
                        default=str).decode()
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def _cards(data: dict) -> list[tuple[str, str]]:
    """The header's figures: (label, value)."""
    meta, tree = data.get("meta", {}), data.get("tree", {})
    rows = {r["method"]: r for r in data.get("kl", [])}
    cards = [("pool instances", _fmt(tree.get("n_pool"))),
             (f"selected ({meta.get('method') or 'none'})", _fmt(tree.get("n_selected"))),
             ("target sample", _fmt(tree.get("n_target")))]
    pool, chosen = rows.get("pool", {}), rows.get(meta.get("method"), {})
    if pool.get("level"):  # the level the budget is aligned on, then the leaves
        cards.append((f"KL(target‖pool) → selection, level {pool['level']}",
                      f"{_fmt(pool.get('kl_aligned'))} → {_fmt(chosen.get('kl_aligned'))}"))
    if rows:
        cards.append(("KL(target‖pool) → selection" + (", leaves" if pool.get("level") else ""),
                      f"{_fmt(pool.get('kl'))} → {_fmt(chosen.get('kl'))}"))
    return cards
