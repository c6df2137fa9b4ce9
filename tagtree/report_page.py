"""Report stage (render): the report-data dict (``tagtree.io.store.report``) -> one self-contained
HTML page (its own small SVG chart code inlined, no network, all data text escaped).

Safety: static parts go through ``html.escape``; the data travels as JSON inside a
``<script type="application/json">`` with ``<``, ``>`` and ``&`` written as ``\\u003c`` etc.,
so no ``</script>`` can close it; the page's JavaScript (and the chart code in
``tagtree/resources/report/charts.js``, ~15 KB: a sunburst, bars and lines as inline SVG, in
place of plotly.js's 4.8 MB) writes data text only through ``textContent``;
a Content-Security-Policy with a per-page nonce runs only the page's own two scripts and forbids
every network request.
"""

from __future__ import annotations

import hashlib
import html
import re
from typing import Any

import orjson

_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)


def chart_library() -> str:
    """The report's chart code (shipped with the package)."""
    from importlib.resources import files

    return files("tagtree").joinpath("resources/report/charts.js").read_text(encoding="utf-8")


def render_report(data: dict[str, Any], *, chart_js: str | None = None) -> str:
    """The report page as one string. ``chart_js``: the chart code (default: the package's
    ``resources/report/charts.js``)."""
    if chart_js is None:
        chart_js = chart_library()
    payload = script_json(_compact(data))
    library = _SCRIPT_END.sub(r"<\\/\1", chart_js)  # "</script" may not occur inside a script
    nonce = hashlib.sha256(payload.encode()).hexdigest()[:32]
    meta = data.get("meta", {})
    title = f"tagtree report · {meta.get('run_id') or 'no run'}"
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
           "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'; "
           "base-uri 'none'")
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        _header(data),
        _sections(data),
        f'<script type="application/json" id="report-data">{payload}</script>',
        f'<script nonce="{nonce}">{library}</script>',
        f'<script nonce="{nonce}">{_JS}</script>',
        "</body></html>\n",
    ])


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


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


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


def _table(rows: list[dict], columns: list[str] | None = None, cls: str = "", *,
           header: bool = True, mark: tuple[str, Any] | None = None) -> str:
    """An HTML table; every cell escaped. ``mark``: (column, value) of rows to highlight."""
    if not rows:
        return '<p class="muted">none</p>'
    columns = columns or list(rows[0])
    head = ("<thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr></thead>"
            if header else "")
    body = "".join(
        ('<tr class="mark">' if mark and r.get(mark[0]) == mark[1] else "<tr>")
        + "".join(f"<td>{_e(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f'<table class="{cls}">{head}<tbody>{body}</tbody></table>'


def _pairs(mapping: dict) -> str:
    return _table([{"k": k, "v": v} for k, v in mapping.items()], ["k", "v"], "kv", header=False)


def _header(data: dict) -> str:
    meta, tree = data.get("meta", {}), data.get("tree", {})
    kl = {r["method"]: r["kl"] for r in data.get("kl", [])}
    cards = [("pool instances", _fmt(tree.get("n_pool"))),
             (f"selected ({meta.get('method') or 'none'})", _fmt(tree.get("n_selected"))),
             ("target sample", _fmt(tree.get("n_target")))]
    if kl:
        cards.append(("KL(target‖pool) → selection",
                      f"{_fmt(kl.get('pool'))} → {_fmt(kl.get(meta.get('method')))}"))
    cards_html = "".join(f'<div class="card"><div class="big">{_e(v)}</div>'
                         f'<div class="muted">{_e(k)}</div></div>' for k, v in cards)
    return (f"<header><h1>tagtree report</h1><p class=\"muted\">run <b>{_e(meta.get('run_id'))}"
            f"</b> · tree <b>{_e(meta.get('tree_version'))}</b> · generated "
            f"{_e(meta.get('generated_at'))} · {_e(meta.get('db'))}</p>"
            f'<div class="cards">{cards_html}</div></header>')


def _sections(data: dict) -> str:
    base = data.get("baselines", {})
    man = data.get("manifest", {})
    meta = data.get("meta", {})
    config = orjson.dumps(man.get("config", {}), option=orjson.OPT_INDENT_2).decode()
    return f"""
<section><h2>Knowledge tree</h2>
<p class="muted">Sector size: the pool's mass (each instance counts once, split over its leaves).
Colour: how much more (blue) or less (red) of its mass the selection puts in a node than the
pool does (log2 ratio). Click a node to zoom in and list its tags and examples; click the
centre (or the path above the chart) to go back up.</p>
<div id="tree-path" class="crumbs"></div>
<div class="treebox"><div id="tree-chart" class="chart tall"></div>
<aside id="node-panel"><p class="muted">Click a node of the tree.</p></aside></div>
<div id="top-nodes" class="chips"></div></section>
<section><h2>Where the mass goes: top-level nodes</h2>
<p class="muted">Share of each group's mass in every top-level node.</p>
<div id="top-bars" class="chart"></div></section>
<section><h2>Alignment to the target</h2>
<p class="muted">KL(target ‖ group) over the leaves: 0 means the group spreads over the leaves
exactly like the target sample; lower is closer. The pool is the distribution before selection.
</p><div id="kl-bars" class="chart short"></div></section>
<section class="two"><div><h2>Coverage per level</h2><p class="muted">Share of a level's nodes
(those the pool reaches) holding at least one instance (higher: fewer blind spots).</p>
<div id="coverage" class="chart"></div></div>
<div><h2>Normalized entropy per level</h2><p class="muted">Entropy of the mass over a level's
nodes divided by its maximum, log(nodes the pool reaches) (1: spread evenly, 0: all in one node).
</p>
<div id="entropy" class="chart"></div></div></section>
<section><h2>Quality scores</h2><p class="muted">Share of the pool and of the selection
({_e(meta.get('method'))}) in each quality bin.</p><div id="quality" class="chart"></div></section>
<section><h2>Selection vs baselines</h2>
<p class="muted">One row per selection method stored for this run, plus any metrics recorded by
<code>tagtree compare</code>.</p>
{_table(base.get("rows", []), ["method"] + base.get("columns", []), "wide",
        mark=("method", meta.get("method")))}</section>
<section><h2>Run manifest</h2><div class="grid">
<div><h3>Run</h3>{_pairs(man.get("run", {}))}</div>
<div><h3>Counts</h3>{_pairs(man.get("counts", {}))}</div>
<div><h3>Fingerprints</h3>{_pairs(man.get("fingerprints", {}))}</div>
<div><h3>Timings (s)</h3>{_pairs(man.get("timings", {}))}</div>
<div><h3>Cost</h3>{_pairs(man.get("cost", {}))}</div>
<div><h3>Quarantine</h3>{_table(man.get("quarantine", []))}</div></div>
<h3>Inputs</h3>{_table(man.get("inputs", []))}
<details><summary>Configuration</summary><pre>{_e(config)}</pre></details></section>
"""


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
max-width:1280px;padding:16px 24px;color:#1d2330;background:#fafbfc}
h1{margin:.2em 0}h2{font-size:18px;margin:.2em 0 .3em}h3{font-size:14px;margin:.8em 0 .3em}
section{background:#fff;border:1px solid #e3e6eb;border-radius:8px;padding:14px 18px;
margin:14px 0}
section.two{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.muted{color:#667085;margin:.2em 0 .6em}.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #e3e6eb;border-radius:8px;padding:8px 14px;min-width:150px}
.big{font-size:22px;font-weight:600}.chart{height:380px}.chart.short{height:260px}
.chart.tall{height:620px}.treebox{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);
gap:14px}#node-panel{border-left:1px solid #e3e6eb;padding-left:14px;max-height:620px;
overflow:auto}.chips{display:flex;gap:6px;flex-wrap:wrap;margin-top:8px}
.crumbs button{border:0;background:none;color:#2563eb;cursor:pointer;font:inherit;padding:0}
.chips button{border:1px solid #c9ced6;background:#f3f5f8;border-radius:14px;padding:3px 10px;
cursor:pointer;font:inherit}.tag{display:inline-block;background:#eef2ff;border-radius:10px;
padding:1px 8px;margin:2px;font-size:12px}.example{border-left:3px solid #c9ced6;
padding:4px 8px;margin:6px 0;white-space:pre-wrap;font-size:13px;background:#f8f9fb}
.example.sel{border-color:#2563eb}table{border-collapse:collapse;margin:4px 0}
td,th{border-bottom:1px solid #eef0f3;padding:3px 10px;text-align:left;vertical-align:top}
table.wide td:not(:first-child),table.wide th:not(:first-child){text-align:right}
table.kv td:first-child{color:#667085}tr.mark td{font-weight:600;background:#eef2ff}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:4px 24px}
pre{background:#f6f8fa;padding:10px;overflow:auto;max-height:400px}
"""

# Data text reaches the DOM only through textContent (here and in the chart code).
_JS = r"""
(function () {
  "use strict";
  performance.mark("tagtree-start");  // after the chart code is parsed; benchmarks read these
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var C = D.tree.columns, nodes = [], byId = {}, kids = {};
  C.id.forEach(function (id, i) {
    var n = {detail: D.tree.details[id] || null};
    Object.keys(C).forEach(function (k) { n[k] = C[k][i]; });
    nodes.push(n); byId[id] = n;
    (kids[n.parent] = kids[n.parent] || []).push(n);
  });
  var el = function (tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  };
  var pct = function (x) {
    return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%";
  };
  var colour = {pool: "#98a2b3", target: "#f59e0b"};
  var seriesColour = function (name) {
    return colour[name] || (name === D.meta.method ? "#2563eb" : undefined);
  };

  function showNode(id) {
    var n = byId[id], panel = document.getElementById("node-panel");
    if (!n) return;
    panel.replaceChildren();
    panel.appendChild(el("h3", n.name));
    var d = n.detail || {description: "", tags: [], examples: []};
    if (d.description) panel.appendChild(el("p", d.description, "muted"));
    var path = [], p = n;
    while (p && p.parent >= 0) { p = byId[p.parent]; if (p) path.unshift(p.name); }
    if (path.length) panel.appendChild(el("p", "in: " + path.join(" › "), "muted"));
    var t = document.createElement("table"); t.className = "kv";
    [["level", n.level === 0 ? "0 (leaf)" : n.level], ["pool instances", n.pool.toLocaleString()],
     ["selected", n.selected.toLocaleString()], ["target instances", n.target.toLocaleString()],
     ["share of pool", pct(n.pool_share)], ["share of selection", pct(n.selected_share)],
     ["share of target", pct(n.target_share)], ["tags under node", n.size]
    ].forEach(function (kv) {
      var tr = document.createElement("tr");
      tr.appendChild(el("td", kv[0])); tr.appendChild(el("td", kv[1])); t.appendChild(tr);
    });
    panel.appendChild(t);
    if (!n.detail) {
      panel.appendChild(el("p", "Tags and examples of this node were left out to keep the " +
                              "file small (report.detail_nodes).", "muted"));
    }
    if (d.tags.length) {
      panel.appendChild(el("h3", "Top tags"));
      var box = el("div");
      d.tags.forEach(function (tag) { box.appendChild(el("span", tag, "tag")); });
      panel.appendChild(box);
    }
    if (d.examples.length) {
      panel.appendChild(el("h3", "Example instructions"));
      d.examples.forEach(function (ex) {
        var d = el("div", ex.text, "example" + (ex.selected ? " sel" : ""));
        d.title = ex.selected ? "selected" : "not selected";
        panel.appendChild(d);
      });
    }
  }

  // The knowledge tree. Only `levels_shown` levels below the current root are drawn
  // (a 100K-instance tree has ~30K nodes); a click re-roots the view at the clicked node.
  var ratio = function (n) {
    if (!n.pool_share) return 0;
    var r = Math.log2(Math.max(n.selected_share, 1e-3) / n.pool_share);
    return Math.max(-3, Math.min(3, r));
  };
  var kind = D.meta.chart === "icicle" ? "icicle" : "sunburst";
  var hasSel = !!D.meta.method;
  var treeDiv = document.getElementById("tree-chart"), root = null;

  // Up to `levels_shown` levels below the root, but no level that would take the drawing past
  // `max_sectors` (a ring of hundreds of slivers is unreadable and slow); always one level.
  function viewNodes(rootId) {
    var shown = [], frontier = rootId === null ? (kids[-1] || []) : [byId[rootId]];
    var rings = rootId === null ? D.meta.levels_shown : D.meta.levels_shown + 1;
    for (var depth = 0; depth < rings && frontier.length; depth++) {
      if (depth > (rootId === null ? 0 : 1) &&
          shown.length + frontier.length > D.meta.max_sectors) break;
      shown = shown.concat(frontier);
      var next = [];
      frontier.forEach(function (n) { Array.prototype.push.apply(next, kids[n.id] || []); });
      frontier = next;
    }
    return shown;
  }

  function drawTree(rootId) {
    root = rootId;
    var shown = viewNodes(rootId), inView = {};
    shown.forEach(function (n) { inView[n.id] = true; });
    // Sector size = pool mass; a node's own value is what its drawn children do not cover.
    var values = shown.map(function (n) {
      var covered = (kids[n.id] || []).reduce(function (acc, c) {
        return acc + (inView[c.id] ? c.pool_mass : 0);
      }, 0);
      return Math.max(0, n.pool_mass - covered);
    });
    // Tiny sectors get no label: unreadable, and every label costs drawing time.
    var whole = shown.reduce(function (acc, n) {
      return acc + (n.id === rootId || (rootId === null && n.parent < 0) ? n.pool_mass : 0);
    }, 0) || 1;
    var items = shown.map(function (n, i) {
      var share = n.target_share === null ? 0 : n.target_share;
      return {id: n.id, parent: n.id !== rootId && inView[n.parent] ? n.parent : null,
              value: values[i], label: n.name, showLabel: n.pool_mass / whole >= 0.004,
              colour: hasSel ? TTCharts.diverging(ratio(n), 3) : null,
              tip: n.name + "\npool: " + n.pool.toLocaleString() + "\nselected: " +
                   n.selected.toLocaleString() + "\nshare of target: " + pct(share)};
    });
    TTCharts.sunburst(treeDiv, items, {scale: hasSel ? "selection/pool\n(log2)" : null,
                                       onclick: clicked, shape: kind});
    var crumbs = document.getElementById("tree-path"), path = [], p = byId[rootId];
    while (p) { path.unshift(p); p = byId[p.parent]; }
    crumbs.replaceChildren();
    var top = el("button", "whole tree"); top.type = "button";
    top.addEventListener("click", function () { drawTree(null); });
    crumbs.appendChild(top);
    path.forEach(function (n) {
      crumbs.appendChild(el("span", " › "));
      var b = el("button", n.name); b.type = "button";
      b.addEventListener("click", function () { drawTree(n.id); showNode(n.id); });
      crumbs.appendChild(b);
    });
  }

  function clicked(id) {
    var n = byId[id];
    showNode(n.id);
    if (n.id === root) drawTree(n.parent >= 0 ? n.parent : null);  // the centre: one level up
    else if (kids[n.id]) drawTree(n.id);
  }
  drawTree(null);
  performance.mark("tagtree-tree");
  var tops = nodes.filter(function (n) { return n.parent < 0; });
  var chips = document.getElementById("top-nodes");
  tops.forEach(function (n) {
    var b = el("button", n.name); b.type = "button";
    b.addEventListener("click", function () { drawTree(n.id); showNode(n.id); });
    chips.appendChild(b);
  });
  // The first screen (header + tree) paints before the charts below it are drawn.
  requestAnimationFrame(function () { setTimeout(drawCharts, 0); });
  var resized = null;
  window.addEventListener("resize", function () {
    clearTimeout(resized);
    resized = setTimeout(function () { drawTree(root); drawCharts(); }, 150);
  });

  function drawCharts() {
    var T = D.top_level, series = [{name: "pool", values: T.pool, colour: colour.pool}];
    if (hasSel) series.push({name: "selection (" + D.meta.method + ")", values: T.selected,
                             colour: seriesColour(D.meta.method)});
    if (T.target.length) series.push({name: "target", values: T.target, colour: colour.target});
    TTCharts.bars(document.getElementById("top-bars"), {labels: T.names, series: series,
                                                        percent: true});

    if (D.kl.length) {
      TTCharts.hbars(document.getElementById("kl-bars"), {
        labels: D.kl.map(function (r) { return r.label; }),
        values: D.kl.map(function (r) { return r.kl; }),
        colours: D.kl.map(function (r) { return seriesColour(r.method) || "#7c8da6"; }),
        xTitle: "KL(target ‖ group)"});
    } else {
      document.getElementById("kl-bars").replaceChildren(
        el("p", "No target sample in this store: ingest one with --target to see alignment.",
           "muted"));
    }

    var L = D.levels, xs = L.levels.map(function (lv, i) {
      return lv === 0 ? "leaves (" + L.n_nodes[i] + ")" : "level " + lv + " (" + L.n_nodes[i] + ")";
    });
    ["coverage", "entropy"].forEach(function (metric) {
      TTCharts.lines(document.getElementById(metric), {labels: xs, yMax: 1.05,
        series: Object.keys(L[metric]).map(function (name) {
          return {name: name, values: L[metric][name], colour: seriesColour(name),
                  width: name === D.meta.method ? 3 : 1.5};
        })});
    });

    var Q = D.quality;
    if (Q.edges.length) {
      var mids = Q.pool.map(function (_, i) { return (Q.edges[i] + Q.edges[i + 1]) / 2; });
      var norm = function (c) {
        var s = c.reduce(function (a, b) { return a + b; }, 0) || 1;
        return c.map(function (x) { return x / s; });
      };
      var qs = [{name: "pool (mean " + Q.pool_mean + ")", values: norm(Q.pool),
                 colour: colour.pool}];
      if (hasSel) qs.push({name: "selection (mean " + Q.selected_mean + ")",
                           values: norm(Q.selected), colour: seriesColour(D.meta.method)});
      TTCharts.bars(document.getElementById("quality"), {labels: mids, series: qs,
        percent: true, overlay: true, numeric: true, xTitle: "quality score"});
    } else {
      document.getElementById("quality").replaceChildren(el("p", "No scores stored.", "muted"));
    }
    performance.mark("tagtree-end");
    document.body.setAttribute("data-rendered", "1");
  }
})();
"""
