"""`explore(loss, path)`: one self-contained HTML page to step through a backward pass.

The page holds the graph's SVG (drawn without values: the side panel shows them, as they stand
at the current step), a JSON record of every node and every backward step, and a small script
(no network, no external files). Prev/Next (or the arrow keys) move through the steps; the
current op is outlined in red, finished ops turn green, and clicking a node shows its value
and its gradient at that step ("not computed yet" before any has arrived).
"""
import html
import json
import re
from pathlib import Path

import numpy as np

from tinygrad_tx import backend

from .explorer_assets import CSS, JS
from .graph import GraphPlan, draw_graph
from .labels import label_of
from .render import svg_text
from .stepper import trace_backward

CAP = 4096              # arrays with more elements are summarised by their statistics
BUDGET = 2_000_000      # numbers in the whole page; past it, arrays are summarised too


class _Encoder:
    """Arrays -> JSON-able dicts: {"shape", "dtype", "flat": [...]} or {"shape", "dtype", "stats"}.
    Non-finite numbers become the strings "inf", "-inf", "nan" (JSON has no literal for them)."""

    def __init__(self, budget=BUDGET):
        self.budget = budget

    def __call__(self, arr):
        a = backend.to_numpy(arr)
        out = {"shape": list(a.shape), "dtype": str(a.dtype)}
        if a.size <= CAP and a.size <= self.budget:
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
                          "grad_out": enc(s.grad_out), "sent": sent})
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


def explore(loss, path, title=None, collapse=None, max_nodes=300, rankdir="LR"):
    """Run backward from `loss` (it must not have been backpropagated yet) step by step, and
    write the explorer page to `path` (.html). Returns the path."""
    path = Path(path)
    steps = trace_backward(loss)
    plan = GraphPlan(loss, collapse)
    title = title or f"backward pass: {len(steps)} steps"
    svg = _svg_body(svg_text(draw_graph(loss, rankdir=rankdir, show_values=False, collapse=collapse,
                                        max_nodes=max_nodes, legend=True)))
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
    <button id="prev" type="button">&#9664; Prev</button>
    <button id="next" type="button">Next &#9654;</button>
    <button id="fit" type="button">fit to width</button>
    <span id="status">step <span id="step-index" data-step="0">0</span> of {len(steps)}:
      <span id="op-label"></span></span>
    <span class="hint">arrow keys step; click any node to inspect it</span>
  </div>
</header>
<main>
  <div id="graph">{svg}</div>
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
    return path
