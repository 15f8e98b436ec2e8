"""The CSS and JavaScript of the explorer page (inlined into the HTML file: no network).

The script reads the JSON in <script id="viz-data" type="application/json"> and only ever puts
user strings into the page through `textContent`, never as HTML.
"""

CSS = r"""
* { box-sizing: border-box; }
html, body { height: 100%; }
body { margin: 0; display: flex; flex-direction: column; font: 14px/1.4 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; }
header { flex: 0 0 auto; padding: 8px 14px; border-bottom: 1px solid #ddd; background: #fafbfc; }
header h1 { font-size: 17px; margin: 0 0 6px 0; }
#controls { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
#controls button { font-size: 14px; padding: 3px 10px; cursor: pointer; }
#controls .group { display: inline-flex; gap: 4px; align-items: center; }
#controls .hint { color: #777; font-size: 12px; }
#zoom-level { min-width: 3.2em; text-align: center; font-size: 12px; color: #555; }
#op-label { font-family: Menlo, Consolas, monospace; font-weight: 600; }
#legend { display: flex; flex-wrap: wrap; gap: 3px 14px; margin-top: 6px; font-size: 12px; color: #444; }
#legend .key { display: inline-flex; align-items: center; gap: 5px; }
#legend .swatch { display: inline-block; width: 22px; height: 13px; border: 1.5px solid #999; border-radius: 3px; background: #fff; }
#legend .swatch.current { border: 3px solid #d62728; background: #ffd9d9; }
#legend .swatch.current-out { border: 3px solid #d62728; background: #e3ecfa; }
#legend .swatch.done { border-color: #4a6fa5; background: #d9f0d3; }
#legend .swatch.has-grad { border: 2px solid #e6958c; background: #e3ecfa; }
#legend .swatch.selected { border: 3px dashed #1f77b4; }
main { flex: 1 1 auto; min-height: 0; display: flex; }
#graph { flex: 1 1 auto; min-width: 0; overflow: auto; position: relative; cursor: grab; background: #fff; }
#graph.dragging { cursor: grabbing; user-select: none; }
#canvas { width: max-content; margin: 0 auto; padding: 10px; }
#canvas svg { display: block; max-width: none; }
#graph g.node { cursor: pointer; }
#graph g.node.current polygon, #graph g.node.current path, #graph g.node.current ellipse
  { stroke: #d62728 !important; stroke-width: 4px; }
#graph g.node.current path, #graph g.node.current ellipse { fill: #ffd9d9 !important; }
#graph g.node.current-out > polygon:last-of-type { stroke: #d62728 !important; stroke-width: 3px; }
#graph g.node.done path, #graph g.node.done ellipse { fill: #d9f0d3 !important; }
#graph g.node.has-grad > polygon:last-of-type { stroke: #e6958c; stroke-width: 2px; }
#graph g.node.selected polygon, #graph g.node.selected path, #graph g.node.selected ellipse
  { stroke: #1f77b4 !important; stroke-width: 3px; stroke-dasharray: 5 2; }
aside { flex: 0 0 430px; overflow: auto; border-left: 1px solid #ddd; padding: 8px 12px; }
aside h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: #555; margin: 14px 0 4px; }
#rule { white-space: pre-wrap; background: #f5f7fa; padding: 6px 8px; border-radius: 4px; margin: 0;
        font: 12px/1.45 Menlo, Consolas, monospace; }
.meta { color: #666; font-size: 12px; margin: 2px 0; }
.grad-title { color: #c0392b; font-weight: 600; margin-top: 6px; }
.title { font-weight: 600; font-family: Menlo, Consolas, monospace; }
.rule-text { white-space: pre-wrap; font: 12px/1.45 Menlo, Consolas, monospace; background: #f5f7fa; padding: 6px 8px; }
.none { color: #999; font-style: italic; }
table.numbers, table.heatmap { border-collapse: collapse; font: 11px Menlo, Consolas, monospace; margin: 2px 0 6px; }
table.numbers td, table.numbers th { border: 1px solid #ddd; padding: 1px 5px; text-align: right; }
table.numbers th { background: #f3f3f3; color: #666; font-weight: normal; }
table.heatmap td { border: 1px solid #fff; min-width: 12px; height: 13px; padding: 0 3px; text-align: right; }
table.heatmap td:hover { outline: 2px solid #333; }
.scale { font-size: 11px; color: #666; }
.scale .bar { display: inline-block; width: 90px; height: 9px; vertical-align: middle; margin: 0 4px;
              background: linear-gradient(to right, rgb(38,102,255), #fff, rgb(255,51,38)); border: 1px solid #ccc; }
.stats { font: 12px Menlo, Consolas, monospace; }
.array { overflow-x: auto; max-width: 100%; }
table.numbers td, table.heatmap td { white-space: nowrap; }
.sent { margin-bottom: 6px; }
"""

JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("viz-data").textContent);
  var steps = data.steps, nodes = data.nodes, drawn = data.drawn;
  var cur = 0, selected = null;
  var $ = function (id) { return document.getElementById(id); };
  var pane = $("graph"), svg = pane.querySelector("svg");
  var svgNode = {};                       // drawn node id -> its <g class="node">
  Array.prototype.forEach.call(pane.querySelectorAll("g.node"), function (g) {
    var t = g.querySelector("title");
    if (t) svgNode[t.textContent.trim()] = g;
  });

  function num(v) {
    if (typeof v !== "string") return v;
    return v === "inf" ? Infinity : v === "-inf" ? -Infinity : NaN;
  }
  function fmt(v) {
    v = num(v);
    if (v === Infinity) return "inf";
    if (v === -Infinity) return "-inf";
    if (v !== v) return "nan";
    if (v === 0) return "0";                       // -0 too
    var a = Math.abs(v);
    return (a >= 1e5 || a < 1e-3) ? v.toExponential(3) : String(+v.toPrecision(4));
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function shapeStr(s) { return "(" + s.join(", ") + (s.length === 1 ? "," : "") + ")"; }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }

  // ------------------------------------------------------------------ arrays as heatmaps
  function color(v, maxAbs, isBool) {
    // diverging: blue below 0, white at 0, red above, scaled by the largest |value|
    v = num(v);
    if (isBool) return v ? "#444" : "#f4f4f4";
    if (v !== v) return "#ff00ff";
    if (v === Infinity) return "#7a0000";
    if (v === -Infinity) return "#001a4d";
    var t = maxAbs > 0 ? Math.max(-1, Math.min(1, v / maxAbs)) : 0;
    var r, g, b;
    if (t >= 0) { r = 255; g = Math.round(255 * (1 - 0.8 * t)); b = Math.round(255 * (1 - 0.85 * t)); }
    else { t = -t; r = Math.round(255 * (1 - 0.85 * t)); g = Math.round(255 * (1 - 0.6 * t)); b = 255; }
    return "rgb(" + r + "," + g + "," + b + ")";
  }
  function heatmap(flat, offset, rows, cols, maxAbs, isBool, lead) {
    var showText = cols <= 10;                     // wider rows: colours only, values on hover
    var table = el("table", "heatmap");
    for (var r = 0; r < rows; r++) {
      var tr = el("tr");
      for (var c = 0; c < cols; c++) {
        var v = flat[offset + r * cols + c];
        var td = el("td", "num cell", showText ? fmt(v) : "");
        td.style.background = color(v, maxAbs, isBool);
        var t = isBool ? 0 : Math.abs(num(v)) / (maxAbs || 1);
        if (isBool ? num(v) : (t > 0.6 || !isFinite(num(v)))) td.style.color = "#fff";
        td.setAttribute("data-v", String(v));
        td.title = "[" + lead.concat(rows > 1 || lead.length ? [r] : []).concat([c]).join(", ") + "] = " + fmt(v);
        tr.appendChild(td);
      }
      table.appendChild(tr);
    }
    return table;
  }
  function renderArray(enc) {
    var box = el("div", "array");
    box.appendChild(el("div", "meta", shapeStr(enc.shape) + " " + enc.dtype));
    if (!enc.flat) {
      var s = enc.stats || {};
      var text = Object.keys(s).map(function (k) { return k + " " + (typeof s[k] === "number" ? fmt(s[k]) : s[k]); }).join("   ");
      box.appendChild(el("div", "stats", text + "   (too large to list)"));
      return box;
    }
    var flat = enc.flat, shape = enc.shape.slice(), isBool = enc.dtype === "bool";
    while (shape.length && shape[0] === 1) shape.shift();      // (1, 4, 4) is drawn as (4, 4)
    if (!shape.length) {
      var nt = el("table", "numbers"), tr = el("tr"), td = el("td", "num", fmt(flat[0]));
      td.setAttribute("data-v", String(flat[0]));
      tr.appendChild(td); nt.appendChild(tr); box.appendChild(nt);
      return box;
    }
    var cols = shape[shape.length - 1], rows = shape.length > 1 ? shape[shape.length - 2] : 1;
    var maxAbs = 0;
    flat.forEach(function (v) { v = Math.abs(num(v)); if (isFinite(v) && v > maxAbs) maxAbs = v; });
    var per = rows * cols, lead = shape.slice(0, -2);
    for (var m = 0; m * per < flat.length; m++) {
      var idx = [], rest = m;                      // the leading index of matrix m
      for (var a = lead.length - 1; a >= 0; a--) { idx.unshift(rest % lead[a]); rest = Math.floor(rest / lead[a]); }
      if (lead.length) box.appendChild(el("div", "meta", "[" + idx.concat([":", ":"]).join(", ") + "]"));
      box.appendChild(heatmap(flat, m * per, rows, cols, maxAbs, isBool, idx));
    }
    if (!isBool) {
      var sc = el("div", "scale", fmt(-maxAbs));
      sc.appendChild(el("span", "bar"));
      sc.appendChild(document.createTextNode(fmt(maxAbs) + "   (hover a cell for its value)"));
      box.appendChild(sc);
    }
    return box;
  }

  // ------------------------------------------------------------------ gradients over time
  function gradAt(id, i) {
    // the gradient tensor `id` holds once step i is done: its full gradient if it is the output
    // of a step <= i, else the sum sent to it so far; null if none has arrived
    var g = null;
    for (var j = 0; j <= i && j < steps.length; j++) {
      var s = steps[j];
      if (s.out === id) g = s.grad_out;
      for (var k = 0; k < s.sent.length; k++) {
        var e = s.sent[k];
        if (e.to === id && e.grad) g = e.total || e.grad;
      }
    }
    return g;
  }
  function tname(id) { var n = nodes[id]; return (n && n.name) || "tensor"; }
  function arrivedFrom(s) {
    if (!s.from.length) return "the seed: backward starts here";
    var parts = s.from.map(function (f) { return "from " + f.op + " (step " + (f.step + 1) + ")"; });
    return parts.length === 1 ? parts[0] : "sum of " + parts.length + " contributions: " + parts.join(" + ");
  }

  // ------------------------------------------------------------------ panels
  function showNode(id) {
    var box = clear($("node-detail"));
    var n = nodes[id];
    if (!n) { box.appendChild(el("div", "none", "Nothing to show for this node.")); return; }
    if (n.kind === "tensor") {
      box.appendChild(el("div", "title", tname(id)));
      box.appendChild(el("div", "meta", "node " + id + (n.scope ? "   scope " + n.scope : "") +
        (n.op ? "   made by " + nodes[n.op].label : n.requires_grad ? "   leaf (requires grad)" : "   leaf (constant)")));
      box.appendChild(el("div", "meta", "value"));
      box.appendChild(renderArray(n.value));
      box.appendChild(el("div", "grad-title", "gradient dL/d(" + tname(id) + ") after step " + (cur + 1)));
      var g = gradAt(id, cur);
      if (g) box.appendChild(renderArray(g));
      else box.appendChild(el("div", "none", n.requires_grad ? "not computed yet" : "no gradient (constant: needs none)"));
    } else if (n.kind === "op") {
      box.appendChild(el("div", "title", n.label));
      box.appendChild(el("div", "meta", "node " + id + (n.scope ? "   scope " + n.scope : "") +
        (n.step !== null ? "   backward step " + (n.step + 1) : "   not reached by backward")));
      box.appendChild(el("div", "meta", "inputs: " + n.inputs.map(tname).join(", ") + "   output: " + tname(n.out)));
      box.appendChild(el("pre", "rule-text", n.rule || "(no rule written)"));
    } else if (n.kind === "box") {
      box.appendChild(el("div", "title", "collapsed scope " + n.scope));
      box.appendChild(el("div", "meta", n.ops + " ops and " + n.leaves + " leaves inside; draw with a larger " +
        "collapse depth (or none) to see them."));
    }
  }
  function mark() {
    Object.keys(svgNode).forEach(function (k) {
      svgNode[k].classList.remove("current", "current-out", "done", "has-grad", "selected");
    });
    for (var j = 0; j < cur; j++) {
      if (svgNode[steps[j].drawn]) svgNode[steps[j].drawn].classList.add("done");
    }
    Object.keys(nodes).forEach(function (id) {
      if (nodes[id].kind === "tensor" && gradAt(id, cur) && svgNode[drawn[id]]) svgNode[drawn[id]].classList.add("has-grad");
    });
    var s = steps[cur];
    if (s) {
      if (svgNode[s.out_drawn]) svgNode[s.out_drawn].classList.add("current-out");
      if (svgNode[s.drawn]) svgNode[s.drawn].classList.add("current");
    }
    if (selected && svgNode[drawn[selected] || selected]) svgNode[drawn[selected] || selected].classList.add("selected");
  }
  function show(i) {
    if (!steps.length) return;
    cur = Math.max(0, Math.min(steps.length - 1, i));
    var s = steps[cur];
    var idx = $("step-index");
    idx.textContent = String(cur + 1);
    idx.setAttribute("data-step", String(cur));
    $("op-label").textContent = s.label;
    $("rule").textContent = s.rule || "(no rule written)";
    var gv = clear($("grad-view"));
    gv.setAttribute("data-tensor", s.out);
    gv.appendChild(el("div", "grad-title", "dL/d(" + tname(s.out) + ")  arriving at the output of " + s.label));
    gv.appendChild(el("div", "meta", arrivedFrom(s)));
    gv.appendChild(renderArray(s.grad_out));
    var sv = clear($("sent-view"));
    s.sent.forEach(function (e, j) {
      var d = el("div", "sent");
      d.appendChild(el("div", "meta", "to input " + j + ": " + tname(e.to) + (e.total ? "  (adds to what it already had)" : "")));
      if (e.grad) d.appendChild(renderArray(e.grad));
      else d.appendChild(el("div", "none", "nothing (needs no gradient)"));
      sv.appendChild(d);
    });
    $("prev").disabled = cur === 0;
    $("next").disabled = cur === steps.length - 1;
    mark();
    if (selected) showNode(selected);
    follow(svgNode[s.drawn]);
  }

  // ------------------------------------------------------------------ pan and zoom
  // The SVG is resized (it stays sharp at any scale) and the pane scrolls: scale 1 is the
  // layout's own size, 1pt = 1.33px.
  var natW = svg ? svg.width.baseVal.value : 0, natH = svg ? svg.height.baseVal.value : 0;
  var MIN_START = 0.6, MAX_START = 1.3;          // opening scale: fit the width, but legible
  var scale = 1;
  function clamp(v, lo, hi) { return Math.max(lo, Math.min(hi, v)); }
  function setScale(s, cx, cy) {
    // zoom to s keeping the point (cx, cy) of the pane (client coordinates) where it is
    if (!svg) return;
    s = clamp(s, 0.05, 8);
    var p = pane.getBoundingClientRect();
    if (cx === undefined) { cx = p.left + pane.clientWidth / 2; cy = p.top + pane.clientHeight / 2; }
    var r = svg.getBoundingClientRect();
    var gx = (cx - r.left) / scale, gy = (cy - r.top) / scale;   // that point in layout units
    scale = s;
    svg.style.width = (natW * s) + "px";
    svg.style.height = (natH * s) + "px";
    r = svg.getBoundingClientRect();
    pane.scrollLeft += r.left + gx * s - cx;
    pane.scrollTop += r.top + gy * s - cy;
    pane.setAttribute("data-scale", s.toFixed(4));
    $("zoom-level").textContent = Math.round(s * 100) + "%";
  }
  function paneSize() { return [Math.max(pane.clientWidth - 20, 50), Math.max(pane.clientHeight - 20, 50)]; }
  function fitAll() {
    var sz = paneSize();
    setScale(Math.min(sz[0] / natW, sz[1] / natH));
    pane.scrollLeft = 0; pane.scrollTop = 0;
  }
  function follow(g) {
    // scroll the pane (only) so that g is in view, centred, when it is not already
    if (!g) return;
    var p = pane.getBoundingClientRect(), r = g.getBoundingClientRect(), m = 16;
    var w = pane.clientWidth, h = pane.clientHeight;
    if (r.left >= p.left + m && r.right <= p.left + w - m && r.top >= p.top + m && r.bottom <= p.top + h - m) return;
    pane.scrollLeft += (r.left + r.right) / 2 - (p.left + w / 2);
    pane.scrollTop += (r.top + r.bottom) / 2 - (p.top + h / 2);
  }
  pane.addEventListener("wheel", function (e) {
    if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) return;   // sideways: scroll
    e.preventDefault();
    var dy = e.deltaY * (e.deltaMode === 1 ? 40 : e.deltaMode === 2 ? 400 : 1);
    setScale(scale * Math.exp(-dy * 0.0015), e.clientX, e.clientY);
  }, {passive: false});
  var drag = null, dragged = false;
  pane.addEventListener("mousedown", function (e) {
    if (e.button !== 0) return;
    drag = {x: e.clientX, y: e.clientY, left: pane.scrollLeft, top: pane.scrollTop};
    dragged = false;
  });
  window.addEventListener("mousemove", function (e) {
    if (!drag) return;
    var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!dragged && Math.abs(dx) + Math.abs(dy) < 4) return;    // a click, not a drag
    dragged = true;
    pane.classList.add("dragging");
    pane.scrollLeft = drag.left - dx;
    pane.scrollTop = drag.top - dy;
    e.preventDefault();
  });
  window.addEventListener("mouseup", function () { drag = null; pane.classList.remove("dragging"); });
  $("zoom-in").addEventListener("click", function () { setScale(scale * 1.25); });
  $("zoom-out").addEventListener("click", function () { setScale(scale / 1.25); });
  $("fit").addEventListener("click", fitAll);

  // ------------------------------------------------------------------ export this step
  var SHAPES = "polygon, path, ellipse, polyline, rect";
  function stepSVG() {
    // a copy of the SVG with the step's highlight styles written into each shape, at the
    // layout's own size, with a caption naming the step
    var copy = svg.cloneNode(true);
    copy.removeAttribute("style");
    var from = svg.querySelectorAll("g.node"), to = copy.querySelectorAll("g.node");
    for (var i = 0; i < from.length; i++) {
      var a = from[i].querySelectorAll(SHAPES), b = to[i].querySelectorAll(SHAPES);
      for (var k = 0; k < a.length; k++) {
        var cs = getComputedStyle(a[k]);
        ["fill", "stroke", "stroke-width", "stroke-dasharray"].forEach(function (prop) {
          b[k].style.setProperty(prop, cs.getPropertyValue(prop));
        });
      }
      to[i].removeAttribute("class");
      to[i].setAttribute("class", "node");
    }
    // a caption band above the graph: grow the viewBox up (and right, for a long caption)
    var s = steps[cur], text = s ? "backward step " + (cur + 1) + "/" + steps.length + ": " + s.label +
      "   (red: current op, green: done)" : document.title;
    var live = copy.viewBox.baseVal, pad = 22;       // live: read its numbers before changing it
    var x = live.x, y = live.y - pad, w = Math.max(live.width, 7 * text.length + 12), h = live.height + pad;
    ["width", "height"].forEach(function (k) {      // the size attributes keep their unit (pt)
      var old = copy.getAttribute(k), unit = old.replace(/^[0-9.]+/, "");
      var grown = parseFloat(old) * (k === "width" ? w / live.width : h / live.height);
      copy.setAttribute(k, grown.toFixed(2) + unit);
    });
    copy.setAttribute("viewBox", [x, y, w, h].join(" "));
    var bg = document.createElementNS(svg.namespaceURI, "rect"), cap = document.createElementNS(svg.namespaceURI, "text");
    [["x", x], ["y", y], ["width", w], ["height", h], ["fill", "white"]].forEach(function (kv) { bg.setAttribute(kv[0], String(kv[1])); });
    [["x", x + 6], ["y", y + pad - 7], ["font-family", "Helvetica, Arial, sans-serif"], ["font-size", "13"]]
      .forEach(function (kv) { cap.setAttribute(kv[0], String(kv[1])); });
    cap.textContent = text;
    copy.insertBefore(cap, copy.firstChild);
    copy.insertBefore(bg, cap);
    return new XMLSerializer().serializeToString(copy) + "\n";       // UTF-8: no prolog needed
  }
  function save(blob, ext) {
    var a = $("download"), old = a.href;
    a.href = URL.createObjectURL(blob);
    a.download = "backward-step-" + (cur + 1) + "." + ext;
    a.setAttribute("data-kind", ext);
    a.click();
    if (old && old.indexOf("blob:") === 0) URL.revokeObjectURL(old);
  }
  $("save-svg").addEventListener("click", function () {
    save(new Blob([stepSVG()], {type: "image/svg+xml"}), "svg");
  });
  $("save-png").addEventListener("click", function () {
    // the same SVG drawn onto a canvas at twice its size (a PNG for a blog post)
    var text = stepSVG(), img = new Image();
    img.onload = function () {
      var k = Math.min(2, 12000 / Math.max(img.width, img.height));
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(img.width * k); canvas.height = Math.round(img.height * k);
      var ctx = canvas.getContext("2d");
      ctx.fillStyle = "white"; ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      canvas.toBlob(function (png) { save(png, "png"); }, "image/png");
    };
    img.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(text);
  });

  // ------------------------------------------------------------------ keys and clicks
  $("next").addEventListener("click", function () { show(cur + 1); });
  $("prev").addEventListener("click", function () { show(cur - 1); });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "ArrowRight") show(cur + 1);
    else if (e.key === "ArrowLeft") show(cur - 1);
    else if (e.key === "+" || e.key === "=") setScale(scale * 1.25);
    else if (e.key === "-" || e.key === "_") setScale(scale / 1.25);
    else if (e.key === "0") fitAll();
    else return;
    e.preventDefault();
  });
  pane.addEventListener("click", function (e) {
    if (dragged) { dragged = false; return; }      // the end of a pan, not a click
    var g = e.target.closest ? e.target.closest("g.node") : null;
    if (!g) return;
    var t = g.querySelector("title");
    var id = t ? t.textContent.trim() : "";
    if (!nodes[id]) return;
    selected = id;
    showNode(id);
    mark();
  });

  // opening view: the graph as wide as the pane, but never so small it cannot be read
  if (svg) setScale(clamp(paneSize()[0] / natW, MIN_START, MAX_START));
  if (steps.length) show(0);
  else $("rule").textContent = "This tensor was made by no op: there is nothing to backpropagate through.";
  window.vizExplorer = {show: show, setScale: setScale, fit: fitAll, stepSVG: stepSVG,
                        scale: function () { return scale; }};
})();
"""
