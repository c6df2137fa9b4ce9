/* tagtree report charts: a sunburst, grouped/horizontal bars and line charts drawn as inline
   SVG: only what the report draws, in a few KB (a general charting library is MBs). All data
   text goes through textContent: nothing is parsed as markup. */
var TTCharts = (function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2",
                 "#ff9da6", "#9d755d", "#bab0ac"];

  function node(tag, attrs, parent, text) {
    var e = document.createElementNS(NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (parent) parent.appendChild(e);
    return e;
  }
  function tip(e, text) { node("title", {}, e, text); return e; }
  function canvas(div, height) {
    div.replaceChildren();
    var w = Math.max(div.clientWidth || 600, 240), h = height || div.clientHeight || 360;
    var s = node("svg", {width: w, height: h, viewBox: "0 0 " + w + " " + h,
                         "font-family": "system-ui, sans-serif", "font-size": 12}, div);
    return {svg: s, w: w, h: h};
  }
  // Blue for > 0 (over-sampled), red for < 0, light grey at 0; v in [-m, m].
  function diverging(v, m) {
    var t = Math.max(-1, Math.min(1, v / (m || 1)));
    var from = [242, 242, 242], to = t >= 0 ? [33, 102, 172] : [178, 24, 43];
    var a = Math.abs(t), c = from.map(function (x, i) { return Math.round(x + (to[i] - x) * a); });
    return "rgb(" + c.join(",") + ")";
  }
  function lighten(hex, f) {
    var n = parseInt(hex.slice(1), 16), c = [n >> 16, (n >> 8) & 255, n & 255];
    return "rgb(" + c.map(function (x) { return Math.round(x + (255 - x) * f); }).join(",") + ")";
  }
  function fmt(v, percent) {
    if (percent) return (100 * v).toFixed(v < 0.1 && v > 0 ? 1 : 0) + "%";
    return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
  }
  function ticks(max, n) {
    if (!(max > 0)) return [0];
    var raw = max / (n || 5), p = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * p; })
      .find(function (s) { return s >= raw; });
    var out = [];
    for (var v = 0; v <= max + step * 1e-9; v += step) out.push(+v.toFixed(10));
    return out;
  }
  function legend(s, series, x, y) {
    var g = node("g", {"class": "legend"}, s);
    series.forEach(function (se) {
      node("rect", {x: x, y: y - 9, width: 12, height: 10, fill: se.colour, rx: 2}, g);
      var t = node("text", {x: x + 16, y: y}, g, se.name);
      x += 28 + 7 * String(se.name).length;
      t.setAttribute("data-series", "");
    });
    return g;
  }
  function arc(cx, cy, r0, r1, a0, a1) {
    if (a1 - a0 >= 2 * Math.PI - 1e-6) {  // a full disk or ring (drawn even-odd): no seam
      var circle = function (r) {
        return "M" + cx + "," + (cy - r) + " A" + r + "," + r + " 0 1 1 " + cx + "," + (cy + r) +
               " A" + r + "," + r + " 0 1 1 " + cx + "," + (cy - r) + " Z";
      };
      return circle(r1) + (r0 > 0 ? " " + circle(r0) : "");
    }
    var big = a1 - a0 > Math.PI ? 1 : 0;
    var p = function (r, a) { return (cx + r * Math.sin(a)).toFixed(2) + "," +
                                     (cy - r * Math.cos(a)).toFixed(2); };
    var d = "M" + p(r1, a0) + " A" + r1 + "," + r1 + " 0 " + big + " 1 " + p(r1, a1);
    d += r0 > 0 ? " L" + p(r0, a1) + " A" + r0 + "," + r0 + " 0 " + big + " 0 " + p(r0, a0)
                : " L" + p(0, 0);
    return d + " Z";
  }

  /* items: [{id, parent (an id in items, or null for a top ring), value (own, not covered by
     children), label, colour (optional), tip, showLabel}]; opts: {onclick(id), scale (title
     of a -3..3 colour bar, or null), shape: "sunburst" (default) or "icicle"}. */
  function sunburst(div, items, opts) {
    opts = opts || {};
    var c = canvas(div), s = c.svg, byId = {}, kids = {}, roots = [];
    items.forEach(function (it) { byId[it.id] = it; });
    items.forEach(function (it) {
      if (it.parent === null || !(it.parent in byId)) roots.push(it);
      else (kids[it.parent] = kids[it.parent] || []).push(it);
    });
    var total = function (it) {
      if (it._total === undefined) {
        it._total = (it.value || 0) + (kids[it.id] || []).reduce(function (a, k) {
          return a + total(k); }, 0);
      }
      return it._total;
    };
    var depth = 0;
    var place = function (it, d) { depth = Math.max(depth, d + 1);
      (kids[it.id] || []).forEach(function (k) { place(k, d + 1); }); };
    roots.forEach(function (r) { place(r, 0); });
    var icicle = opts.shape === "icicle";
    var bar = opts.scale ? 110 : 0, cx = (c.w - bar) / 2, cy = c.h / 2;
    var R = Math.min(c.w - bar, c.h) / 2 - 6, ring = R / Math.max(depth, 1);
    var all = roots.reduce(function (a, r) { return a + total(r); }, 0) || 1;
    var draw = function (it, d, a0, a1, top) {
      var g = node("g", {"class": "sector", "data-id": it.id, cursor: "pointer"}, s);
      var r0 = d * ring, r1 = (d + 1) * ring;
      var fill = it.colour || lighten(PALETTE[top % PALETTE.length], Math.min(0.6, d * 0.18));
      if (icicle) {  // depth across, share down: a0/a1 are fractions of the height
        var colW = (c.w - bar - 8) / Math.max(depth, 1), y0 = 4 + a0 * (c.h - 8);
        var hh = (a1 - a0) * (c.h - 8), x0 = 4 + d * colW;
        tip(node("rect", {x: x0.toFixed(1), y: y0.toFixed(1), width: (colW - 1).toFixed(1),
                          height: Math.max(hh - 1, 0.5).toFixed(1), fill: fill}, g),
            it.tip || it.label);
        if (it.showLabel !== false) {
          var fs = Math.max(6, Math.min(13, hh * 0.7, (colW - 8) / (0.58 * String(it.label)
            .length)));
          node("text", {x: (x0 + 4).toFixed(1), y: (y0 + hh / 2).toFixed(1),
                        "dominant-baseline": "central", "font-size": fs.toFixed(1),
                        fill: "#1d2330"}, g, it.label);
        }
      } else {
        tip(node("path", {d: arc(cx, cy, r0, r1, a0, a1), fill: fill, stroke: "#fff",
                          "stroke-width": 1, "fill-rule": "evenodd"}, g), it.tip || it.label);
      }
      if (!icicle && it.showLabel !== false) {
        var disk = r0 === 0 && a1 - a0 > 6.28;  // the centre: the label across it
        var mid = (a0 + a1) / 2, rm = disk ? 0 : (r0 + r1) / 2;
        var span = disk ? 2 * ring : (a1 - a0) * rm, len = Math.max(String(it.label).length, 1);
        var radial = span < ring && !disk;
        var room = radial ? ring - 6 : Math.min(span, 2 * ring) - 8;
        var size = Math.max(6, Math.min(13, room / (0.58 * len), (radial ? span : ring) * 0.8));
        var x = cx + rm * Math.sin(mid), y = cy - rm * Math.cos(mid);
        var deg = mid * 180 / Math.PI - 90;  // radial: along the radius, kept upright
        if (deg > 90) deg -= 180;
        var t = node("text", {x: x.toFixed(1), y: y.toFixed(1), "text-anchor": "middle",
                              "dominant-baseline": "central", "font-size": size.toFixed(1),
                              fill: "#1d2330"}, g, it.label);
        if (radial) t.setAttribute("transform", "rotate(" + deg.toFixed(1) + " " + x.toFixed(1) +
                                   " " + y.toFixed(1) + ")");
      }
      if (opts.onclick) g.addEventListener("click", function (ev) {
        ev.stopPropagation(); opts.onclick(it.id); });
      var a = a0;
      (kids[it.id] || []).forEach(function (k) {
        var b = a + (a1 - a0) * total(k) / (total(it) || 1);
        draw(k, d + 1, a, b, top); a = b;
      });
    };
    var a = 0, full = icicle ? 1 : 2 * Math.PI;
    roots.forEach(function (r, i) {
      var b = a + full * total(r) / all;
      draw(r, 0, a, b, i); a = b;
    });
    if (opts.scale) {  // a vertical -3..3 colour bar
      var defs = node("defs", {}, s), grad = node("linearGradient", {id: "tt-scale", x1: 0,
                                                                      y1: 1, x2: 0, y2: 0}, defs);
      [-3, -1.5, 0, 1.5, 3].forEach(function (v, i) {
        node("stop", {offset: (i * 25) + "%", "stop-color": diverging(v, 3)}, grad); });
      var x0 = c.w - bar + 40, h = Math.min(240, c.h - 60), y0 = (c.h - h) / 2;
      node("rect", {x: x0, y: y0, width: 12, height: h, fill: "url(#tt-scale)"}, s);
      [3, 0, -3].forEach(function (v, i) {
        node("text", {x: x0 + 16, y: y0 + i * h / 2 + 4, "font-size": 11}, s,
             (v > 0 ? "+" : "") + v); });
      String(opts.scale).split("\n").forEach(function (line, i) {
        node("text", {x: x0 - 30, y: y0 - 22 + i * 13, "font-size": 11}, s, line); });
    }
  }

  function frame(c, o, yMax, xLabels, rotate) {
    var m = {l: 52, r: 16, t: 30, b: rotate ? 90 : 44};
    var pw = c.w - m.l - m.r, ph = c.h - m.t - m.b, s = c.svg;
    var ax = node("g", {"class": "axes", fill: "#475467"}, s);
    ticks(yMax, 5).forEach(function (v) {
      var y = m.t + ph - ph * v / (yMax || 1);
      node("line", {x1: m.l, x2: m.l + pw, y1: y, y2: y, stroke: "#eef0f3"}, ax);
      node("text", {x: m.l - 6, y: y + 4, "text-anchor": "end", "font-size": 11}, ax,
           fmt(v, o.percent));
    });
    node("line", {x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph, stroke: "#98a2b3"}, ax);
    if (o.xTitle) node("text", {x: m.l + pw / 2, y: c.h - 6, "text-anchor": "middle"}, ax,
                       o.xTitle);
    return {m: m, pw: pw, ph: ph, ax: ax};
  }

  /* Grouped vertical bars. o: {labels, series: [{name, values, colour}], percent, overlay,
     xTitle, height}. */
  function bars(div, o) {
    var c = canvas(div, o.height), n = o.labels.length;
    var yMax = Math.max.apply(null, [0].concat(o.series.map(function (se) {
      return Math.max.apply(null, [0].concat(se.values)); }))) * 1.08 || 1;
    var rotate = n > 6 && !o.numeric;
    var f = frame(c, o, yMax, o.labels, rotate), slot = f.pw / Math.max(n, 1);
    var k = o.overlay ? 1 : o.series.length, bw = Math.max(1, slot * (o.overlay ? 0.95 : 0.8) / k);
    o.series.forEach(function (se, j) {
      var g = node("g", {"class": "series", opacity: o.overlay ? 0.65 : 1}, c.svg);
      se.values.forEach(function (v, i) {
        var h = f.ph * (v || 0) / yMax, x = f.m.l + i * slot + (slot - bw * k) / 2 +
          (o.overlay ? 0 : j * bw);
        tip(node("rect", {x: x.toFixed(1), y: (f.m.t + f.ph - h).toFixed(1),
                          width: bw.toFixed(1), height: Math.max(h, 0).toFixed(1),
                          fill: se.colour}, g),
            se.name + " · " + o.labels[i] + ": " + fmt(v || 0, o.percent));
      });
    });
    var every = o.numeric ? Math.ceil(n / 8) : 1;
    o.labels.forEach(function (lab, i) {
      if (i % every) return;
      var x = f.m.l + (i + 0.5) * slot, y = f.m.t + f.ph + 14;
      var t = node("text", {x: x.toFixed(1), y: y, "text-anchor": rotate ? "end" : "middle",
                            "font-size": 11, fill: "#475467"}, f.ax,
                   o.numeric ? (+lab).toFixed(2) : lab);
      if (rotate) t.setAttribute("transform", "rotate(-30 " + x.toFixed(1) + " " + y + ")");
    });
    legend(c.svg, o.series, f.m.l, 16);
  }

  /* Horizontal bars, one per row. o: {labels, values, colours, xTitle, height}. */
  function hbars(div, o) {
    var c = canvas(div, o.height), n = o.labels.length;
    var left = 16 + 7 * Math.max.apply(null, [4].concat(o.labels.map(function (l) {
      return String(l).length; })));
    left = Math.min(left, c.w / 2);
    var top = 8, bottom = 38, pw = c.w - left - 60, ph = c.h - top - bottom;
    var max = Math.max.apply(null, [0].concat(o.values)) * 1.05 || 1, row = ph / Math.max(n, 1);
    var s = c.svg;
    ticks(max, 5).forEach(function (v) {
      var x = left + pw * v / max;
      node("line", {x1: x, x2: x, y1: top, y2: top + ph, stroke: "#eef0f3"}, s);
      node("text", {x: x, y: top + ph + 14, "text-anchor": "middle", "font-size": 11,
                    fill: "#475467"}, s, fmt(v));
    });
    o.labels.forEach(function (lab, i) {
      var y = top + i * row, w = pw * o.values[i] / max;
      tip(node("rect", {x: left, y: (y + row * 0.15).toFixed(1), width: w.toFixed(1),
                        height: (row * 0.7).toFixed(1), fill: o.colours[i]}, s),
          lab + ": " + o.values[i].toFixed(3));
      node("text", {x: left - 6, y: (y + row / 2 + 4).toFixed(1), "text-anchor": "end"}, s, lab);
      node("text", {x: (left + w + 4).toFixed(1), y: (y + row / 2 + 4).toFixed(1),
                    "font-size": 11}, s, o.values[i].toFixed(3));
    });
    if (o.xTitle) node("text", {x: left + pw / 2, y: c.h - 6, "text-anchor": "middle"}, s,
                       o.xTitle);
  }

  /* Lines with markers over categorical x. o: {labels, series: [{name, values, colour,
     width}], yMax, height}. */
  function lines(div, o) {
    var c = canvas(div, o.height), n = o.labels.length;
    var f = frame(c, o, o.yMax || 1, o.labels, false), slot = f.pw / Math.max(n, 1);
    var xy = function (i, v) { return [f.m.l + (i + 0.5) * slot,
                                       f.m.t + f.ph - f.ph * (v || 0) / (o.yMax || 1)]; };
    o.series.forEach(function (se, j) {
      var colour = se.colour || PALETTE[j % PALETTE.length];
      se.colour = colour;
      var g = node("g", {"class": "series"}, c.svg);
      node("polyline", {points: se.values.map(function (v, i) {
        return xy(i, v).map(function (z) { return z.toFixed(1); }).join(","); }).join(" "),
        fill: "none", stroke: colour, "stroke-width": se.width || 1.5}, g);
      se.values.forEach(function (v, i) {
        var p = xy(i, v);
        tip(node("circle", {cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: 3.5, fill: colour}, g),
            se.name + " · " + o.labels[i] + ": " + (v === null ? "–" : v.toFixed(3)));
      });
    });
    o.labels.forEach(function (lab, i) {
      node("text", {x: (f.m.l + (i + 0.5) * slot).toFixed(1), y: f.m.t + f.ph + 16,
                    "text-anchor": "middle", "font-size": 11, fill: "#475467"}, f.ax, lab);
    });
    legend(c.svg, o.series, f.m.l, 16);
  }

  return {sunburst: sunburst, bars: bars, hbars: hbars, lines: lines, diverging: diverging};
})();
