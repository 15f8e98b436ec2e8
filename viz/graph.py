"""Draw a tensor's computation graph with Graphviz: one box per tensor (name, shape, dtype,
values, gradient), one rounded node per op, arrows for the forward data flow.

Like micrograd's `draw_dot`, this only reads public node attributes: `t.parents`, `t.op`,
`t.op_name`, `t.op.name`, `t.name`, `t.scope`, `t.data`, `t.grad`, `t.requires_grad`.

Node names are stable: the tensor at position k of `graph_nodes(root)` (a topological order) is
drawn as `t{k}` and the op that produced it as `op{k}`; a collapsed module scope is `box{j}`.
The explorer uses the same names to find nodes in the SVG.

Every user string (tensor names, scopes, op labels) goes into HTML-like labels through `esc`,
so quotes, braces, `|`, `<`, `>`, `&` or a `<script>` tag are drawn as plain text.
"""

import graphviz
import numpy as np

from tinygrad_tx import backend
from tinygrad_tx.autograd import toposort

from .graphviz_program import svg_of_source, run_layout
from .labels import label_of

# ----------------------------------------------------------------------------- colours
FONT = "Helvetica"
EDGE = "#5f6b7a"            # forward edges (data flow)
GRAD = "#c0392b"            # gradient text: dL/d(tensor), flows against the arrows
HEAD_PARAM = "#fff2cc"      # leaf that requires grad (parameter / input)
HEAD_CONST = "#ececec"      # tensor that needs no gradient (data, targets, masks, constants)
HEAD_INNER = "#e3ecfa"      # intermediate tensor (made by an op)
OP_FILL = "#dbe9ff"
OP_BORDER = "#4a6fa5"
BOX_FILL = "#efe3f7"        # a collapsed module scope
HOT = "#d62728"             # highlight (current op, anomaly)
HOT_FILL = "#ffd9d9"
DONE_FILL = "#d9f0d3"       # shade: already processed in the backward pass
CLUSTER_FILLS = ("#f7f9fc", "#eef2f8")

SMALL = 6                   # tensors with at most this many elements show every value


def esc(text):
    """Escape a string for an HTML-like Graphviz label (and so for SVG text). A backslash is
    doubled: dot would otherwise expand escapes such as \\N (the node name) even here."""
    text = str(text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\\", "\\\\")
            .replace('"', "&quot;").replace("'", "&#39;"))


def _short(text, n):
    return text if len(text) <= n else text[:n - 1] + "…"


# ----------------------------------------------------------------------------- graph walk
def graph_nodes(root):
    """Every tensor reachable from `root` through `.parents` (constants included), each after its
    parents, root last. Deterministic: the same graph gives the same order (and node ids)."""
    return toposort(root, every_tensor=True)


def _scope_parent(scope):
    return scope.rsplit(".", 1)[0] if "." in scope else ""


class GraphPlan:
    """Which nodes a drawing shows once scopes are collapsed.

    order: graph_nodes(root); index: id(tensor) -> k. box_of[k]: the collapsed scope tensor k
    sits in (None if drawn normally). visible: the k drawn as tensor nodes (a tensor inside a
    box is drawn only if it is used outside it, or is the root). boxes: scope -> {"id", "ops",
    "leaves"}; absorbed leaves (used only inside one box) are counted there, not drawn."""

    def __init__(self, root, collapse=None):
        self.root = root
        self.order = graph_nodes(root)
        self.index = {id(t): k for k, t in enumerate(self.order)}
        self.op_index = {id(t.op): k for k, t in enumerate(self.order) if t.op is not None}
        consumers = [[] for _ in self.order]
        for k, t in enumerate(self.order):
            for p in t.parents:
                consumers[self.index[id(p)]].append(k)
        self.consumers = consumers
        box_for = _collapser(collapse, [t.scope or "" for t in self.order])
        last = len(self.order) - 1
        self.box_of = [box_for(t.scope or "") for t in self.order]
        for k, t in enumerate(self.order):        # leaves used only inside one box join it
            if t.op is None and self.box_of[k] is None and k != last and consumers[k]:
                boxes = {self.box_of[c] for c in consumers[k]}
                if len(boxes) == 1 and None not in boxes:
                    self.box_of[k] = boxes.pop()
        self.boxes = {}
        for k, t in enumerate(self.order):
            b = self.box_of[k]
            if b is None:
                continue
            info = self.boxes.setdefault(b, {"id": f"box{len(self.boxes)}", "ops": 0, "leaves": 0})
            info["ops" if t.op is not None else "leaves"] += 1
        self.visible = [self.box_of[k] is None or k == last
                        or any(self.box_of[c] != self.box_of[k] for c in consumers[k])
                        for k in range(len(self.order))]

    def tensor_node(self, k):
        """The drawn node standing for tensor k: `t{k}`, or its box when hidden inside one."""
        return f"t{k}" if self.visible[k] else self.boxes[self.box_of[k]]["id"]

    def op_node(self, k):
        """The drawn node standing for the op that made tensor k: `op{k}`, or its box."""
        if self.order[k].op is None:
            return None
        return f"op{k}" if self.box_of[k] is None else self.boxes[self.box_of[k]]["id"]

    def node_for(self, obj):
        """The drawn node for a tensor or an op (Function) of this graph, or None."""
        if id(obj) in self.index:
            return self.tensor_node(self.index[id(obj)])
        if id(obj) in self.op_index:
            return self.op_node(self.op_index[id(obj)])
        return None

    def count(self):
        """(tensor nodes, op nodes, boxes) that a drawing would hold."""
        tensors = sum(self.visible)
        ops = sum(1 for k, t in enumerate(self.order) if t.op is not None and self.box_of[k] is None)
        return tensors, ops, len(self.boxes)


def _collapser(collapse, scopes):
    """collapse (None, a scope name, a list of names, or an int depth) -> scope -> box or None."""
    if collapse is None or collapse == [] or collapse == ():
        return lambda scope: None
    if isinstance(collapse, bool) or not isinstance(collapse, (int, str, list, tuple, set)):
        raise TypeError(f"collapse: expected a scope name, a list of names or an int depth, got {collapse!r}")
    if isinstance(collapse, int):
        if collapse < 1:
            raise ValueError(f"collapse: a depth must be at least 1, got {collapse}")

        def by_depth(scope):
            parts = scope.split(".") if scope else []
            return ".".join(parts[:collapse]) if len(parts) >= collapse else None
        return by_depth
    names = [collapse] if isinstance(collapse, str) else sorted(collapse, key=lambda s: s.count("."))
    known = sorted({s for s in scopes if s})
    for name in names:
        if not any(s == name or s.startswith(name + ".") for s in known):
            raise ValueError(f"collapse: no scope {name!r} in this graph; its scopes are: "
                             f"{', '.join(known[:20]) or '(none)'}{' ...' if len(known) > 20 else ''}")

    def by_name(scope):
        for name in names:                    # outermost first
            if scope == name or scope.startswith(name + "."):
                return name
        return None
    return by_name


# ----------------------------------------------------------------------------- labels
def _num(x):
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{float(x):.4g}"


def _nested(a):
    if a.ndim == 0:
        return _num(a.item())
    return "[" + ", ".join(_nested(x) for x in a) + "]"


def format_values(arr):
    """A short text of an array: every value when small, else mean/std/min/max (one line each
    pair, joined by '\\n')."""
    a = backend.to_numpy(arr)
    if a.size <= SMALL:
        return _nested(a)
    if a.dtype == bool:
        return f"{int(a.sum())} of {a.size} True"
    if a.dtype.kind in "iu":
        return f"min {_num(a.min())}  max {_num(a.max())}"
    finite = a[np.isfinite(a)]
    extra = ""
    if finite.size < a.size:
        counts = [(int(np.isneginf(a).sum()), "-inf"), (int(np.isposinf(a).sum()), "+inf"), (int(np.isnan(a).sum()), "nan")]
        extra = "\n" + ", ".join(f"{n} {what}" for n, what in counts if n)
        if finite.size == 0:
            return extra.strip()
    return (f"mean {_num(finite.mean())}  std {_num(finite.std())}\n"
            f"min {_num(finite.min())}  max {_num(finite.max())}{extra}")


def _lines(text):
    return '<BR ALIGN="LEFT"/>'.join(esc(line) for line in text.split("\n")) + '<BR ALIGN="LEFT"/>'


def _tensor_label(t, grad, show_values, hot, done):
    if t.requires_grad and t.op is None:
        head = HEAD_PARAM
    elif not t.requires_grad:
        head = HEAD_CONST
    else:
        head = HEAD_INNER
    shape = "(" + ", ".join(str(n) for n in t.shape) + ("," if len(t.shape) == 1 else "") + ")"
    border, width = (HOT, 3) if hot else ("#7f8c99", 1)
    bg = DONE_FILL if done else "white"
    rows = [f'<TR><TD ALIGN="LEFT" BGCOLOR="{head}"><B>{esc(_short(label_of(t), 40))}</B>  '
            f'<FONT POINT-SIZE="9" COLOR="#555555">{shape} {esc(t.dtype)}</FONT></TD></TR>']
    if show_values:
        rows.append(f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="9">{_lines(format_values(t.data))}</FONT></TD></TR>')
        if grad is not None:
            g = "grad " + format_values(grad)
        elif t.requires_grad:
            g = "grad: not computed yet"
        else:
            g = "no grad (constant)"
        rows.append(f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="9" COLOR="{GRAD if grad is not None else "#999999"}">'
                    f'{_lines(g)}</FONT></TD></TR>')
    return (f'<<TABLE BORDER="{width}" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3" COLOR="{border}" '
            f'BGCOLOR="{bg}">{"".join(rows)}</TABLE>>')


def _op_label(t):
    name, label = t.op.name, t.op_name or t.op.name
    args = label[len(name) + 1:-1] if label.startswith(name + "(") and label.endswith(")") else ""
    text = f"<B>{esc(name)}</B>"
    if args:
        text += f'<BR/><FONT POINT-SIZE="8">{esc(_short(args, 44))}</FONT>'
    return f"<{text}>"


def _legend(hot, done, boxes):
    """One row of swatches: compact in both LR and TB layouts."""
    def cell(swatch, text, bg="white"):
        return f'<TD BGCOLOR="{bg}">{swatch}</TD><TD ALIGN="LEFT">{text}</TD>'
    cells = [
        '<TD><B>legend</B></TD>',
        cell(f'<FONT COLOR="{EDGE}">──→</FONT>', "forward: data flows along arrows"),
        cell(f'<FONT COLOR="{GRAD}">grad</FONT>', "dL/d(tensor): flows back against them"),
        cell("name", "leaf needing grad", HEAD_PARAM),
        cell("name", "made by an op", HEAD_INNER),
        cell("name", "constant (no grad)", HEAD_CONST),
        cell("Op", "op node", OP_FILL),
    ]
    if boxes:
        cells.append(cell("scope", "collapsed module scope", BOX_FILL))
    if hot:
        cells.append(cell(f'<FONT COLOR="{HOT}">red</FONT>', "highlighted", HOT_FILL))
    if done:
        cells.append(cell("done", "processed by backward", DONE_FILL))
    return (f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3" COLOR="#cccccc">'
            f'<TR>{"".join(cells)}</TR></TABLE>>')


# ----------------------------------------------------------------------------- drawing
class GraphDrawing(graphviz.Digraph):
    """A graphviz.Digraph that displays in Jupyter with `dot` or, failing that, graphviz-pure."""

    def _repr_image_svg_xml(self):
        return svg_of_source(self.source)

    def _repr_image_png(self):
        return run_layout(self.source, "png")


def draw_graph(tensor, rankdir="LR", show_values=True, highlight=(), shade=(), collapse=None,
               max_nodes=300, title=None, grad_of=None, legend=True):
    """The computation graph that produced `tensor`, as a graphviz.Digraph (shows itself in
    Jupyter; `viz.render` writes it to a file).

    highlight: tensors / ops drawn in red. shade: tensors / ops drawn as done (green).
    collapse: a scope name, a list of names, or an int depth (2 folds "h.0.attn.*" into "h.0"):
    each collapsed scope becomes one box. max_nodes: more nodes than this raises ValueError.
    grad_of: tensor -> gradient array or None to show instead of `.grad` (the stepper shows the
    gradients as they stood at one step of the backward pass)."""
    if rankdir not in ("LR", "TB"):
        raise ValueError(f"draw_graph: rankdir must be 'LR' or 'TB', got {rankdir!r}")
    plan = GraphPlan(tensor, collapse)
    n_t, n_op, n_box = plan.count()
    total = n_t + n_op + n_box
    if max_nodes is not None and total > max_nodes:
        hint = "collapse=2 (fold module scopes deeper than 2 levels into boxes)" if any(
            t.scope for t in plan.order) else "collapse= (the graph has no module scopes to fold) or a larger max_nodes"
        raise ValueError(f"draw_graph: the graph has {total} nodes ({n_t} tensors, {n_op} ops, {n_box} boxes), "
                         f"more than max_nodes={max_nodes}; pass {hint}, or raise max_nodes")
    grad_of = grad_of or (lambda t: t.grad)
    hot = {plan.node_for(x) for x in highlight} - {None}
    done = {plan.node_for(x) for x in shade} - {None}

    dot = GraphDrawing("tinygrad_tx")
    dot.attr(rankdir=rankdir, fontname=FONT, fontsize="11", nodesep="0.25", ranksep="0.35",
             newrank="true", bgcolor="white")
    if title:
        dot.attr(label=f'<<B>{esc(title)}</B>>', labelloc="t", labeljust="l", fontsize="14")
    dot.attr("node", fontname=FONT, fontsize="10")
    dot.attr("edge", color=EDGE, arrowsize="0.7", penwidth="1.1")

    placed = {}                         # cluster scope ("" = top level) -> [(name, attrs)]

    def place(scope, name, **attrs):
        placed.setdefault(scope, []).append((name, attrs))

    for k, t in enumerate(plan.order):
        if plan.visible[k]:
            b = plan.box_of[k]
            scope = _scope_parent(b) if b is not None else (t.scope or "")
            node = f"t{k}"
            g = grad_of(t)
            place(scope, node, shape="plain", label=_tensor_label(t, g, show_values, node in hot, node in done))
        if t.op is not None and plan.box_of[k] is None:
            node = f"op{k}"
            attrs = dict(shape="box", style="rounded,filled", fillcolor=OP_FILL, color=OP_BORDER)
            if node in done:
                attrs.update(fillcolor=DONE_FILL)
            if node in hot:
                attrs.update(fillcolor=HOT_FILL, color=HOT, penwidth="3")
            place(t.scope or "", node, label=_op_label(t), margin="0.08,0.03", **attrs)
    for b, info in plan.boxes.items():
        what = _count(info["ops"], "op") + (f", {_count(info['leaves'], 'leaf', 'leaves')}" if info["leaves"] else "")
        attrs = dict(shape="box3d", style="filled", fillcolor=BOX_FILL, color="#7d5a99")
        if info["id"] in done:
            attrs.update(fillcolor=DONE_FILL)
        if info["id"] in hot:
            attrs.update(fillcolor=HOT_FILL, color=HOT, penwidth="3")
        place(_scope_parent(b), info["id"], label=f'<<B>{esc(b)}</B><BR/><FONT POINT-SIZE="9">{what} inside</FONT>>', **attrs)
    _emit_clusters(dot, placed)

    edges = set()
    for k, t in enumerate(plan.order):
        if t.op is None:
            continue
        dst = plan.op_node(k)
        for p in t.parents:
            src = plan.tensor_node(plan.index[id(p)])
            if src == dst:
                continue
            if dst.startswith("op"):                    # one arrow per use: a + a draws two
                dot.edge(src, dst)
            elif (src, dst) not in edges:               # a collapsed box: one arrow per input
                edges.add((src, dst))
                dot.edge(src, dst)
        if plan.visible[k] and (dst, f"t{k}") not in edges:
            edges.add((dst, f"t{k}"))
            dot.edge(dst, f"t{k}")
    if legend:
        dot.node("legend", shape="plain", fontsize="9", label=_legend(bool(hot), bool(done), bool(plan.boxes)))
    return dot


def _count(n, one, many=None):
    return f"{n} {one if n == 1 else many or one + 's'}"


def _emit_clusters(dot, placed):
    """Nodes go into nested `cluster_*` subgraphs by dotted scope ("h" > "h.0" > "h.0.attn")."""
    scopes = set()
    for s in placed:
        while s:
            scopes.add(s)
            s = _scope_parent(s)
    children = {}
    for s in sorted(scopes):
        children.setdefault(_scope_parent(s), []).append(s)
    counter = [0]

    def fill(graph, scope, depth):
        for name, attrs in placed.get(scope, []):
            graph.node(name, **attrs)
        for child in children.get(scope, []):
            counter[0] += 1
            with graph.subgraph(name=f"cluster_{counter[0]}") as sub:
                sub.attr(label=f'<<FONT POINT-SIZE="10" COLOR="#555555">{esc(child)}</FONT>>', labeljust="l",
                         style="rounded,filled", fillcolor=CLUSTER_FILLS[depth % 2], color="#b8c2cc")
                fill(sub, child, depth + 1)
    fill(dot, "", 0)


def draw_anomaly(err, **draw_kwargs):
    """Draw the graph of an AnomalyError's tensor with the failing op in red.

    Forward anomaly: err.tensor is the op's output, so the op is in the graph. Backward
    anomaly: err.tensor is the input that received the non-finite gradient; the op (not
    reachable from it) is added, reading its inputs, with a dashed red edge for the bad
    gradient."""
    root, op = getattr(err, "tensor", None), getattr(err, "op", None)
    if root is None:
        raise ValueError("draw_anomaly: this error carries no tensor (err.tensor is None)")
    draw_kwargs.setdefault("title", str(err).splitlines()[0][:160])
    marks = tuple(draw_kwargs.pop("highlight", ())) + (root,) + ((op,) if op is not None else ())
    dot = draw_graph(root, highlight=marks, **draw_kwargs)
    plan = GraphPlan(root, draw_kwargs.get("collapse"))
    if op is not None and plan.node_for(op) is None:
        dot.node("anomaly_op", label=f'<<B>{esc(op.name)}</B><BR/><FONT POINT-SIZE="8">{esc(_short(op.label(), 44))}</FONT>'
                                     f'<BR/><FONT COLOR="{HOT}">backward: non-finite gradient</FONT>>',
                 shape="box", style="rounded,filled", fillcolor=HOT_FILL, color=HOT, penwidth="3")
        for p in op.parents:
            src = plan.node_for(p)
            if src is not None:
                dot.edge(src, "anomaly_op")
        dot.edge("anomaly_op", plan.node_for(root), color=HOT, style="dashed", constraint="false",
                 label=f'<<FONT COLOR="{HOT}" POINT-SIZE="9">NaN/inf grad</FONT>>')
    return dot
