"""`explore(loss, path)`: one self-contained HTML page to step through a backward pass.

The page holds the graph's SVG (drawn without values: the side panel shows them, as they stand
at the current step), a JSON record of every node and every backward step, and a small script
(no network, no external files). Prev/Next (or the arrow keys) move through the steps; the
current op is outlined in red, finished ops turn green (a legend on the page says so), and
clicking a node shows its value and its gradient at that step ("not computed yet" before any
has arrived). The graph pans (drag) and zooms (wheel, +/-, fit), follows the current op, and
exports the current step as SVG or PNG. Tensors of up to 32 x 32 are heatmaps.

The backward pass is replayed (`trace_backward`), so `explore` works before or after
`loss.backward()` and leaves every `.grad` as it was.
"""
import html
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from tinygrad_tx import backend

from .explorer_assets import CSS, JS
from .graph import BOX_FILL, HEAD_CONST, HEAD_INNER, HEAD_PARAM, OP_BORDER, OP_FILL, GraphPlan, draw_graph
from .labels import label_of
from .render import svg_text
from .stepper import trace_backward

SIDE = 32               # a tensor is listed (as a heatmap) when each of its last two axes is at
CAP = SIDE * SIDE       # most 32 long and it has at most 32 x 32 numbers; else its statistics
BUDGET = 2_000_000      # numbers in the whole page; past it, arrays are summarised too


def listable(shape):
    """True when an array of this shape is shown number by number: after dropping leading axes
    of length 1, a scalar, a row of at most 32, a matrix of at most 32 x 32, or a stack of such
    matrices with at most 32 x 32 numbers in all."""
    shape = list(shape)
    while shape and shape[0] == 1:
        shape.pop(0)
    return math.prod(shape) <= CAP and all(n <= SIDE for n in shape[-2:])


class _Encoder:
    """Arrays -> JSON-able dicts: {"shape", "dtype", "flat": [...]} or {"shape", "dtype", "stats"}.
    Non-finite numbers become the strings "inf", "-inf", "nan" (JSON has no literal for them)."""

    def __init__(self, budget=BUDGET):
        self.budget = budget

    def __call__(self, arr):
        a = backend.to_numpy(arr)
        out = {"shape": list(a.shape), "dtype": str(a.dtype)}
        if listable(a.shape) and a.size <= self.budget:
            self.budget -= a.size
            flat = a.reshape(-1)
            if a.dtype == bool:
                out["flat"] = flat.astype(int).tolist()
            elif a.dtype.kind in "iu":
                out["flat"] = flat.tolist()
            else:
                out["flat"] = [_jnum(x) for x in flat.astype(np.float64).tolist()]
        else:
            out["stats"] = _stats(a)
        return out


def _jnum(x):
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    return float(f"{x:.6g}")


def _stats(a):
    if a.dtype == bool:
        return {"true": int(a.sum()), "of": int(a.size)}
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    if finite.size == 0:
        return {"finite": 0}
    s = {"mean": _jnum(float(finite.mean())), "std": _jnum(float(finite.std())),
         "min": _jnum(float(finite.min())), "max": _jnum(float(finite.max()))}
    if finite.size < a.size:
        s["non-finite"] = int(a.size - finite.size)
    return s


def page_data(loss, steps, plan):
    """The JSON record the page's script reads: nodes, the drawn node of each, and the steps."""
    enc = _Encoder()
    k_of = plan.index
    nodes, drawn = {}, {}
    step_of = {id(s.op): s.index for s in steps}
    for k, t in enumerate(plan.order):
        tid = f"t{k}"
        drawn[tid] = plan.tensor_node(k)
        nodes[tid] = {"kind": "tensor", "name": label_of(t), "shape": list(t.shape), "dtype": str(t.dtype),
                      "scope": t.scope or "", "requires_grad": bool(t.requires_grad),
                      "op": f"op{k}" if t.op is not None else None, "value": enc(t.data)}
        if t.op is not None:
            oid = f"op{k}"
            drawn[oid] = plan.op_node(k)
            nodes[oid] = {"kind": "op", "name": t.op.name, "label": t.op_name, "rule": t.op.rule,
                          "scope": t.scope or "", "out": tid, "step": step_of.get(id(t.op)),
                          "inputs": [f"t{k_of[id(p)]}" for p in t.parents]}
    for scope, info in plan.boxes.items():
        nodes[info["id"]] = {"kind": "box", "scope": scope, "ops": info["ops"], "leaves": info["leaves"]}
        drawn[info["id"]] = info["id"]
    out_steps, seen = [], {}
    for s in steps:
        k = k_of[id(s.output)]
        sent = []
        for p, g in s.parent_grads:
            to = f"t{k_of[id(p)]}"
            entry = {"to": to, "grad": None if g is None else enc(g)}
            if g is not None:
                if to in seen:                  # a reused tensor: gradients add up
                    seen[to] = seen[to] + g
                    entry["total"] = enc(seen[to])
                else:
                    seen[to] = g
            sent.append(entry)
        out_steps.append({"index": s.index, "op": f"op{k}", "out": f"t{k}", "label": s.label, "rule": s.rule,
                          "drawn": plan.op_node(k), "out_drawn": plan.tensor_node(k),
                          "grad_out": enc(s.grad_out), "sent": sent,
                          "from": [{"step": i, "op": name} for i, name, _ in s.arrived_from]})
    return {"nodes": nodes, "drawn": drawn, "steps": out_steps}


def _script_json(obj):
    """JSON safe inside <script type="application/json">: no `</`, `<!--` or `]]>` can appear."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _svg_body(svg):
    """The <svg> element alone (no XML prolog, doctype or comments), checked to hold no script."""
    start = svg.find("<svg")
    if start < 0:
        raise RuntimeError("explore: the layout program returned no <svg> element")
    body = re.sub(r"<!--.*?-->", "", svg[start:], flags=re.S)
    if re.search(r"<script|<[^>]*\son\w+\s*=", body, flags=re.I):   # dot escapes labels; be sure
        raise RuntimeError("explore: refusing to embed an SVG that contains a script")
    return body


class Explorer(os.PathLike):
    """What `explore` returns: the written page. `.path` is its Path; it also stands for that
    path (str(), open(), os.fspath(), and Path's methods such as .read_text() or .exists()), and
    Jupyter shows it inline through `_repr_html_`."""

    def __init__(self, path):
        self.path = Path(path)

    def __getattr__(self, attr):            # only reached for names Explorer lacks: Path's API
        if attr == "path":
            raise AttributeError(attr)
        return getattr(self.path, attr)

    def __fspath__(self):
        return str(self.path)

    def __str__(self):
        return str(self.path)

    def __repr__(self):
        return f"Explorer({str(self.path)!r})"

    def __eq__(self, other):
        return isinstance(other, (Explorer, str, os.PathLike)) and Path(other) == self.path

    def __hash__(self):
        return hash(self.path)

    def _repr_html_(self, height=720):
        """The page inside an iframe (srcdoc: no file or server needed), in a sandbox that may
        run its script and save its downloads but not reach the notebook."""
        page = html.escape(self.path.read_text(encoding="utf-8"), quote=True)
        return (f'<iframe srcdoc="{page}" sandbox="allow-scripts allow-downloads" '
                f'style="width: 100%; height: {int(height)}px; border: 1px solid #ddd"></iframe>')


def _legend():
    """What the outlines and fills mean, as HTML swatches (the page's CSS draws the states)."""
    kinds = [(HEAD_PARAM, "#999", "leaf needing a gradient"), (HEAD_INNER, "#999", "tensor made by an op"),
             (HEAD_CONST, "#999", "constant (no gradient)"), (OP_FILL, OP_BORDER, "op"),
             (BOX_FILL, "#7d5a99", "collapsed module")]
    states = [("current", "current op"), ("current-out", "its output: the gradient arriving"),
              ("done", "op done by backward"), ("has-grad", "tensor holding a gradient"),
              ("selected", "selected (click a node)")]
    cells = [f'<span class="key"><span class="swatch" style="background: {fill}; border-color: {line}"></span>'
             f'{text}</span>' for fill, line, text in kinds]
    cells += [f'<span class="key"><span class="swatch {cls}"></span>{text}</span>' for cls, text in states]
    return "".join(cells)


def explore(loss, path, title=None, collapse=None, max_nodes=300, rankdir="TB"):
    """Replay backward from `loss` step by step (whether or not `loss.backward()` has run; no
    `.grad` changes) and write the explorer page to `path` (.html). collapse: as in
    draw_graph (a scope name, a list of names, a depth, or "repeats"). Returns an Explorer
    (`.path`, and shown inline in Jupyter)."""
    path = Path(path)
    steps = trace_backward(loss)
    plan = GraphPlan(loss, collapse)
    title = title or f"backward pass: {len(steps)} steps"
    svg = _svg_body(svg_text(draw_graph(loss, rankdir=rankdir, show_values=False, collapse=collapse,
                                        max_nodes=max_nodes, legend=False)))
    data = page_data(loss, steps, plan)
    t = html.escape(title)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t}</title>
<style>{CSS}</style>
</head>
<body>
<header>
  <h1>{t}</h1>
  <div id="controls">
    <button id="prev" type="button" title="previous step (left arrow)">&#9664; Prev</button>
    <button id="next" type="button" title="next step (right arrow)">Next &#9654;</button>
    <span id="status">step <span id="step-index" data-step="0">0</span> of {len(steps)}:
      <span id="op-label"></span></span>
    <span class="group">
      <button id="zoom-out" type="button" title="zoom out (-)">&minus;</button>
      <span id="zoom-level">100%</span>
      <button id="zoom-in" type="button" title="zoom in (+)">+</button>
      <button id="fit" type="button" title="the whole graph in view (0)">fit</button>
    </span>
    <span class="group">
      <button id="save-svg" type="button" title="the graph as it stands at this step">download this step as SVG</button>
      <button id="save-png" type="button">as PNG</button>
      <a id="download" hidden></a>
    </span>
    <span class="hint">arrows step; wheel zooms, drag pans; click a node to inspect it</span>
  </div>
  <div id="legend">{_legend()}</div>
</header>
<main>
  <div id="graph"><div id="canvas">{svg}</div></div>
  <aside>
    <h2>Local rule of the current op</h2>
    <pre id="rule"></pre>
    <h2>Gradient arriving</h2>
    <div id="grad-view"></div>
    <h2>Gradients sent to the inputs</h2>
    <div id="sent-view"></div>
    <h2>Selected node</h2>
    <div id="node-detail"><span class="none">Click a node in the graph.</span></div>
  </aside>
</main>
<script type="application/json" id="viz-data">{_script_json(data)}</script>
<script>{JS}</script>
</body>
</html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return Explorer(path)
