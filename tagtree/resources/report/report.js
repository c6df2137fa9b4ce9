// tagtree report page: builds the tree view and charts from the JSON in #report-data.
// Data text reaches the DOM only through textContent (here and in the chart code).
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
      // On the level the budget is aligned on when it is above the leaves (the figure that
      // moves with a small selection), else on the leaves.
      var onLevel = D.kl[0].level > 0;
      TTCharts.hbars(document.getElementById("kl-bars"), {
        labels: D.kl.map(function (r) { return r.label; }),
        values: D.kl.map(function (r) { return onLevel ? r.kl_aligned : r.kl; }),
        colours: D.kl.map(function (r) { return seriesColour(r.method) || "#7c8da6"; }),
        xTitle: "KL(target ‖ group)" + (onLevel ? " on level " + D.kl[0].level : " on the leaves")});
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
