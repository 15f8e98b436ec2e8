"""The CSS and JavaScript of the explorer page (inlined into the HTML file: no network).

The script reads the JSON in <script id="viz-data" type="application/json"> and only ever puts
user strings into the page through `textContent`, never as HTML.
"""

CSS = r"""
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; }
header { padding: 8px 14px; border-bottom: 1px solid #ddd; background: #fafbfc; position: sticky; top: 0; z-index: 2; }
header h1 { font-size: 17px; margin: 0 0 6px 0; }
#controls { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
#controls button { font-size: 14px; padding: 3px 12px; cursor: pointer; }
#controls .hint { color: #777; font-size: 12px; }
#op-label { font-family: Menlo, Consolas, monospace; font-weight: 600; }
main { display: flex; align-items: flex-start; }
#graph { flex: 1 1 auto; overflow: auto; max-height: calc(100vh - 80px); padding: 6px; }
#graph svg { max-width: none; height: auto; }
#graph.fit svg { width: 100%; }
#graph g.node { cursor: pointer; }
#graph g.node.current polygon, #graph g.node.current path, #graph g.node.current ellipse
  { stroke: #d62728 !important; stroke-width: 4px; }
#graph g.node.current path, #graph g.node.current ellipse { fill: #ffd9d9 !important; }
#graph g.node.current-out > polygon:last-of-type { stroke: #d62728 !important; stroke-width: 3px; }
#graph g.node.done path, #graph g.node.done ellipse { fill: #d9f0d3 !important; }
#graph g.node.has-grad > polygon:last-of-type { stroke: #e6958c; stroke-width: 2px; }
#graph g.node.selected polygon, #graph g.node.selected path, #graph g.node.selected ellipse
  { stroke: #1f77b4 !important; stroke-width: 3px; stroke-dasharray: 5 2; }
aside { flex: 0 0 430px; max-height: calc(100vh - 80px); overflow: auto; border-left: 1px solid #ddd; padding: 8px 12px; }
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
table.heatmap td { border: 1px solid #fff; min-width: 14px; height: 14px; padding: 0 3px; text-align: right; }
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
  var svgNode = {};                       // drawn node id -> its <g class="node">
  Array.prototype.forEach.call(document.querySelectorAll("#graph g.node"), function (g) {
    var t = g.querySelector("title");
    if (t) svgNode[t.textContent.trim()] = g;
  });
  var $ = function (id) { return document.getElementById(id); };

  function num(v) {
    if (typeof v !== "string") return v;
    return v === "inf" ? Infinity : v === "-inf" ? -Infinity : NaN;
  }
  function fmt(v) {
    v = num(v);
    if (v === Infinity) return "inf";
    if (v === -Infinity) return "-inf";
    if (v !== v) return "nan";
    if (v === 0) return "0";
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

  // ------------------------------------------------------------------ arrays
  function color(v, maxAbs, isBool) {
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
  function renderArray(enc) {
    var box = el("div", "array");
    box.appendChild(el("div", "meta", shapeStr(enc.shape) + " " + enc.dtype));
    if (!enc.flat) {
      var s = enc.stats || {};
      var text = Object.keys(s).map(function (k) { return k + " " + (typeof s[k] === "number" ? fmt(s[k]) : s[k]); }).join("   ");
      box.appendChild(el("div", "stats", text + "   (too large to list)"));
      return box;
    }
    var flat = enc.flat, shape = enc.shape, isBool = enc.dtype === "bool";
    if (shape.length >= 2) {
      var cols = shape[shape.length - 1], rows = flat.length / Math.max(cols, 1);
      var maxAbs = 0;
      flat.forEach(function (v) { v = Math.abs(num(v)); if (isFinite(v) && v > maxAbs) maxAbs = v; });
      var showText = cols <= 10 && rows <= 32;
      var table = el("table", "heatmap");
      for (var r = 0; r < rows; r++) {
        var tr = el("tr");
        for (var c = 0; c < cols; c++) {
          var v = flat[r * cols + c];
          var td = el("td", "num cell", showText ? fmt(v) : "");
          td.style.background = color(v, maxAbs, isBool);
          var t = isBool ? 0 : Math.abs(num(v)) / (maxAbs || 1);
          if (isBool ? num(v) : (t > 0.6 || !isFinite(num(v)))) td.style.color = "#fff";
          td.setAttribute("data-v", String(v));
          td.title = "[" + r + ", " + c + "] = " + fmt(v);
          tr.appendChild(td);
        }
        table.appendChild(tr);
      }
      if (shape.length > 2) box.appendChild(el("div", "meta", "rows: the first " + (shape.length - 1) + " axes flattened"));
      box.appendChild(table);
    } else {
      var nt = el("table", "numbers");
      var head = el("tr"), body = el("tr");
      flat.forEach(function (v, i) {
        head.appendChild(el("th", null, shape.length ? String(i) : "value"));
        var td = el("td", "num", fmt(v));
        td.setAttribute("data-v", String(v));
        body.appendChild(td);
      });
      nt.appendChild(head); nt.appendChild(body);
      box.appendChild(nt);
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
    var g = svgNode[s.drawn];
    if (g && g.scrollIntoView && !$("graph").classList.contains("fit")) g.scrollIntoView({block: "nearest", inline: "center"});
  }

  $("next").addEventListener("click", function () { show(cur + 1); });
  $("prev").addEventListener("click", function () { show(cur - 1); });
  $("fit").addEventListener("click", function () {
    var on = $("graph").classList.toggle("fit");
    $("fit").textContent = on ? "actual size" : "fit to width";
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "ArrowRight") { show(cur + 1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { show(cur - 1); e.preventDefault(); }
  });
  $("graph").addEventListener("click", function (e) {
    var g = e.target.closest ? e.target.closest("g.node") : null;
    if (!g) return;
    var t = g.querySelector("title");
    var id = t ? t.textContent.trim() : "";
    if (!nodes[id]) return;
    selected = id;
    showNode(id);
    mark();
  });
  if (steps.length) show(0);
  else $("rule").textContent = "This tensor was made by no op: there is nothing to backpropagate through.";
})();
"""
