"""Draw a tensor's computation graph with Graphviz: one box per tensor (name, shape, dtype,
values, gradient), one rounded node per op, arrows for the forward data flow.

Like micrograd's `draw_dot`, this only reads public node attributes: `t.parents`, `t.op`,
`t.op_name`, `t.op.name`, `t.name`, `t.scope`, `t.data`, `t.grad`, `t.requires_grad`.

Node names are stable: the tensor at position k of `graph_nodes(root)` (a topological order) is
drawn as `t{k}` and the op that produced it as `op{k}`; a collapsed module scope (or a folded
run of repeated ones) is `box{j}`. The explorer uses the same names to find nodes in the SVG.
The title and the legend are the graph's own label, not nodes: they do not widen the layout.

Every user string (tensor names, scopes, op labels) goes into HTML-like labels through `esc`,
so quotes, braces, `|`, `<`, `>`, `&` or a `<script>` tag are drawn as plain text.
"""

import graphviz
import numpy as np

from tinygrad_tx import backend
from tinygrad_tx.autograd import toposort

from .explain import Explanation, explain_grad
from .graphviz_program import svg_of_source, run_layout
from .labels import label_of, number

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


def esc(text):
    """Escape a string for an HTML-like Graphviz label (and so for SVG text). A backslash is
    doubled: dot would otherwise expand escapes such as \\N (the node name) even here."""
    text = str(text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\\", "\\\\")
            .replace('"', "&quot;").replace("'", "&#39;"))


def _short(text, n):
    return text if len(text) <= n else text[:n - 3] + "..."      # ASCII: every renderer can measure it


# ----------------------------------------------------------------------------- graph walk
def graph_nodes(root):
    """Every tensor reachable from `root` through `.parents` (constants included), each after its
    parents, root last. Deterministic: the same graph gives the same order (and node ids)."""
    return toposort(root, every_tensor=True)


def _scope_parent(scope):
    return scope.rsplit(".", 1)[0] if "." in scope else ""


class GraphPlan:
    """Which nodes a drawing shows once scopes are collapsed.

    order: graph_nodes(root); index: id(tensor) -> k. box_of[k]: the key of the box tensor k
    sits in (None if drawn normally). visible: the k drawn as tensor nodes (a tensor inside a
    box is drawn only if it is used outside it, or is the root). boxes: key -> {"id", "ops",
    "leaves", "parent", "label"}: the key is the collapsed scope ("h.0"), or for a folded run of
    repeated scopes the range ("h.1 - h.3"); parent is the scope whose cluster the box sits in,
    label its title ("h.1 - h.3  x3"). Absorbed leaves (used only inside one box) are counted
    there, not drawn."""

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
        if collapse == REPEATS:
            box_for, where = _repeats(self.order, self.index)
        else:
            box_for, where = _collapser(collapse, [t.scope or "" for t in self.order]), {}
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
            parent, label = where.get(b, (_scope_parent(b), b))
            info = self.boxes.setdefault(b, {"id": f"box{len(self.boxes)}", "ops": 0, "leaves": 0,
                                             "parent": parent, "label": label})
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


REPEATS = "repeats"


def _collapser(collapse, scopes):
    """collapse (None, a scope name, a list of names, or an int depth) -> scope -> box or None."""
    if collapse is None or collapse == [] or collapse == ():
        return lambda scope: None
    if isinstance(collapse, bool) or not isinstance(collapse, (int, str, list, tuple, set)):
        raise TypeError(f"collapse: expected a scope name, a list of names, an int depth or 'repeats', got {collapse!r}")
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


def _inside(scope, outer):
    return scope == outer or scope.startswith(outer + ".")


def _structure(order, index, members):
    """What a scope computes, without any name: for each tensor made or created inside it (in
    graph order), its op with arguments, shape and dtype, and where each input comes from: an
    earlier tensor of the scope (by position) or the j-th distinct outside tensor (its shape and
    dtype). Two scopes with the same structure do the same computation on different data."""
    local = {k: j for j, k in enumerate(members)}
    outside = {}
    steps = []
    for k in members:
        t = order[k]
        inputs = []
        for p in t.parents:
            kp = index[id(p)]
            if kp in local:
                inputs.append(("in", local[kp]))
            else:
                inputs.append(("out", outside.setdefault(kp, len(outside)), tuple(p.shape), str(p.dtype)))
        steps.append((t.op_name, tuple(t.shape), str(t.dtype), t.requires_grad, tuple(inputs)))
    return tuple(steps)


def _repeats(order, index):
    """collapse="repeats": among the child scopes of each scope (h.0, h.1, h.2 under h), in graph
    order, a run of structurally identical ones keeps its first expanded and folds the rest into
    one box "h.1 - h.2  x2". Returns (scope -> box key or None, box key -> (parent, label))."""
    scopes = {t.scope for t in order if t.scope}
    for s in list(scopes):
        while "." in s:
            s = _scope_parent(s)
            scopes.add(s)
    members = {s: [k for k, t in enumerate(order) if t.scope and _inside(t.scope, s)] for s in scopes}
    children = {}
    for s in scopes:
        children.setdefault(_scope_parent(s), []).append(s)
    folded, where = {}, {}                    # folded scope -> box key; key -> (parent, label)

    def visit(parent):
        kids = sorted(children.get(parent, []), key=lambda s: members[s][0] if members[s] else len(order))
        shapes = [_structure(order, index, members[s]) for s in kids]
        i = 0
        while i < len(kids):
            j = i + 1
            while j < len(kids) and shapes[j] == shapes[i] and shapes[i]:
                j += 1
            visit(kids[i])
            rest = kids[i + 1:j]
            if rest:
                key = rest[0] if len(rest) == 1 else f"{rest[0]} - {rest[-1]}"
                where[key] = (parent, f"{key}  x{len(rest)}")
                for s in rest:
                    folded[s] = key
            i = j
    visit("")

    def box_for(scope):
        while scope:
            if scope in folded:
                return folded[scope]
            scope = _scope_parent(scope)
        return None
    return box_for, where


# ----------------------------------------------------------------------------- labels
VALUE_MODES = ("auto", "all", "stats")
ALL_CAP = 1024              # values="all" still shows statistics above this many elements
GRID_PT = 7                 # font size of the value / gradient grids
ROW_WRAP = 8                # a 1-D grid wraps after this many elements
COL_WRAP = 16               # a wider matrix is drawn as stacked blocks of this many columns


def format_stats(arr):
    """mean/std/min/max of an array as two lines joined by '\\n' (counts for bool, min/max for
    ints; -inf / +inf / nan are counted apart from the finite values)."""
    a = backend.to_numpy(arr)
    if a.size == 0:
        return "empty"
    if a.dtype == bool:
        return f"{int(a.sum())} of {a.size} True"
    if a.dtype.kind in "iu":
        return f"min {number(a.min())}  max {number(a.max())}"
    finite = a[np.isfinite(a)]
    extra = ""
    if finite.size < a.size:
        counts = [(int(np.isneginf(a).sum()), "-inf"), (int(np.isposinf(a).sum()), "+inf"), (int(np.isnan(a).sum()), "nan")]
        extra = "\n" + ", ".join(f"{n} {what}" for n, what in counts if n)
        if finite.size == 0:
            return extra.strip()
    return (f"mean {number(finite.mean())}  std {number(finite.std())}\n"
            f"min {number(finite.min())}  max {number(finite.max())}{extra}")


def _shows_grid(size, values, max_elements):
    """Whether an array of `size` elements is drawn element by element (else statistics)."""
    if values == "stats" or size == 0:
        return False
    return size <= (ALL_CAP if values == "all" else max_elements)


def format_grid(arr, color=None, caption=""):
    """Every element of an array as an HTML-like table, rows and columns as in the array: a
    scalar is one cell, a 1-D array one row (wrapped every ROW_WRAP elements, each row led by the
    index of its first element), a 3-D+ array its 2-D slices stacked, each under its index
    ("[0, 1, :, :]"); more than COL_WRAP columns are split into stacked column blocks
    ("[:, 16:32]"). `caption` is a first row. Small font, tight padding."""
    a = backend.to_numpy(arr)
    if a.ndim == 1 and a.size > ROW_WRAP:
        cells = [[f'<FONT COLOR="#888888">[{r}]</FONT>'] + [esc(number(x)) for x in a[r:r + ROW_WRAP]]
                 for r in range(0, a.size, ROW_WRAP)]
        blocks = [("", cells)]
    else:
        slices = [((), a.reshape((1,) * (2 - a.ndim) + a.shape))] if a.ndim <= 2 else \
            [(i, a[i]) for i in np.ndindex(a.shape[:-2])]
        blocks = []
        for where, m in slices:
            for c in range(0, m.shape[1], COL_WRAP):
                cols = f"{c}:{min(c + COL_WRAP, m.shape[1])}" if m.shape[1] > COL_WRAP else ":"
                head = ", ".join([str(i) for i in where] + [":", cols]) if where or cols != ":" else ""
                blocks.append((f"[{head}]" if head else "", [[esc(number(x)) for x in row[c:c + COL_WRAP]] for row in m]))
    width = max(len(r) for _, cells in blocks for r in cells)
    rows = [f'<TR><TD COLSPAN="{width}" ALIGN="LEFT">{esc(caption)}</TD></TR>'] if caption else []
    for head, cells in blocks:
        if head:
            rows.append(f'<TR><TD COLSPAN="{width}" ALIGN="LEFT"><FONT COLOR="#888888">{esc(head)}</FONT></TD></TR>')
        rows.extend("<TR>" + "".join(f'<TD ALIGN="RIGHT">{x}</TD>' for x in row) + "</TR>" for row in cells)
    colour = f' COLOR="{color}"' if color else ""
    return (f'<FONT POINT-SIZE="{GRID_PT}"{colour}><TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" '
            f'CELLPADDING="1">{"".join(rows)}</TABLE></FONT>')


def _lines(text):
    return '<BR ALIGN="LEFT"/>'.join(esc(line) for line in text.split("\n")) + '<BR ALIGN="LEFT"/>'


def _values_row(arr, values, max_elements, color, caption=""):
    """One label row: a grid of every element or the statistics, optionally under a caption."""
    colour = f' COLOR="{color}"' if color else ""
    if _shows_grid(int(np.prod(arr.shape)), values, max_elements):
        return f'<TR><TD ALIGN="LEFT" CELLPADDING="2">{format_grid(arr, color, caption)}</TD></TR>'
    text = f"{caption} {format_stats(arr)}" if caption else format_stats(arr)
    return f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="8"{colour}>{_lines(text)}</FONT></TD></TR>'


def _tensor_label(t, grad, show_values, hot, done, values="auto", max_elements=64):
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
            f'<FONT POINT-SIZE="8" COLOR="#555555">{shape} {esc(t.dtype)}</FONT></TD></TR>']
    if show_values:
        rows.append(_values_row(t.data, values, max_elements, None))
        if grad is not None:
            rows.append(_values_row(grad, values, max_elements, GRAD, "grad"))
        else:
            text = "grad: not computed yet" if t.requires_grad else "no grad (constant)"
            rows.append(f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="8" COLOR="#999999">{_lines(text)}</FONT></TD></TR>')
    return (f'<<TABLE BORDER="{width}" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3" COLOR="{border}" '
            f'BGCOLOR="{bg}">{"".join(rows)}</TABLE>>')


def _op_label(t):
    name, label = t.op.name, t.op_name or t.op.name
    args = label[len(name) + 1:-1] if label.startswith(name + "(") and label.endswith(")") else ""
    text = f"<B>{esc(name)}</B>"
    if args:
        text += f'<BR/><FONT POINT-SIZE="8">{esc(_short(args, 44))}</FONT>'
    return f"<{text}>"


def legend_table(hot=False, done=False, boxes=False):
    """The legend as a compact two-row table of swatches (HTML-like, for a graph label)."""
    def cell(swatch, text, bg="white"):
        return f'<TD BGCOLOR="{bg}">{swatch}</TD><TD ALIGN="LEFT">{text}</TD>'
    items = [cell(f'<FONT COLOR="{EDGE}">--&gt;</FONT>', "forward: data flows along arrows"),
             cell(f'<FONT COLOR="{GRAD}">grad</FONT>', "dL/d(tensor): flows back against them"),
             cell("Op", "op node", OP_FILL),
             cell("name", "leaf needing grad", HEAD_PARAM),
             cell("name", "made by an op", HEAD_INNER),
             cell("name", "constant (no grad)", HEAD_CONST)]
    if boxes:
        items.append(cell("scope", "collapsed module", BOX_FILL))
    if hot:
        items.append(cell(f'<FONT COLOR="{HOT}">red</FONT>', "highlighted", HOT_FILL))
    if done:
        items.append(cell("done", "processed by backward", DONE_FILL))
    half = (len(items) + 1) // 2
    rows = [items[:half], items[half:] + ["<TD></TD><TD></TD>"] * (2 * half - len(items))]
    return (f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="2" COLOR="#cccccc">'
            + "".join(f'<TR>{"".join(r)}</TR>' for r in rows) + "</TABLE>")


LABEL_FILLERS = 12          # empty columns beside the legend in the graph label (see graph_label)


def graph_label(title=None, subtitle=None, legend=None):
    """The graph's own label (drawn above the graph, not as a node): a bold title, a subtitle
    line and the legend table, each optional. None when all three are missing.

    A title wider than the legend would stretch the legend's cells: Graphviz shares a spanning
    cell's extra width evenly among the columns it spans, so the title spans the legend's column
    and LABEL_FILLERS empty ones, which take nearly all of it."""
    span = f' COLSPAN="{LABEL_FILLERS + 1}"'
    rows = []
    if title:
        rows.append(f'<TR><TD ALIGN="LEFT"{span}><FONT POINT-SIZE="15"><B>{esc(title)}</B></FONT></TD></TR>')
    if subtitle:
        rows.append(f'<TR><TD ALIGN="LEFT"{span}><FONT POINT-SIZE="11" COLOR="#444444">{esc(subtitle)}</FONT></TD></TR>')
    if legend:
        rows.append(f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="9">{legend}</FONT></TD>{"<TD></TD>" * LABEL_FILLERS}</TR>')
    if not rows:
        return None
    return f'<<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="1">{"".join(rows)}</TABLE>>'


# ----------------------------------------------------------------------------- drawing
class GraphDrawing(graphviz.Digraph):
    """A graphviz.Digraph that displays in Jupyter with `dot` or, failing that, graphviz-pure."""

    def _repr_image_svg_xml(self):
        return svg_of_source(self.source)

    def _repr_image_png(self):
        return run_layout(self.source, "png")

    def __repr__(self):             # no memory address: the same graph prints the same text
        edges = sum(" -> " in line for line in self.body)
        nodes = sum(" [" in line and " -> " not in line and not line.lstrip().startswith(("graph", "node", "edge"))
                    for line in self.body)
        return f"<GraphDrawing: {nodes} nodes, {edges} edges>"


class TooManyNodesError(ValueError):
    """A drawing would hold more than max_nodes nodes. `.total`, `.counts` (tensors, ops, boxes),
    `.max_nodes` and `.has_scopes` let a front end (the CLI) word its own hint."""

    def __init__(self, total, counts, max_nodes, has_scopes):
        hint = ("collapse=2 (fold module scopes deeper than 2 levels into boxes), collapse='repeats' "
                "(fold repeated blocks)" if has_scopes else
                "collapse= (the graph has no module scopes to fold) or a larger max_nodes")
        super().__init__(f"draw_graph: the graph has {total} nodes ({counts[0]} tensors, {counts[1]} ops, "
                         f"{counts[2]} boxes), more than max_nodes={max_nodes}; pass {hint}, or raise max_nodes")
        self.total, self.counts, self.max_nodes, self.has_scopes = total, counts, max_nodes, has_scopes


def draw_graph(tensor, rankdir="TB", show_values=True, highlight=(), shade=(), collapse=None,
               max_nodes=300, title=None, grad_of=None, legend=True, values="auto", max_elements=64,
               subtitle=None, explain=None):
    """The computation graph that produced `tensor`, as a graphviz.Digraph (shows itself in
    Jupyter; `viz.render` writes it to a file).

    rankdir: "TB" (top to bottom, the default) or "LR". values: "auto" draws every value and
    every gradient element of a tensor with at most `max_elements` elements as a grid (rows and
    columns as in the array) and statistics (mean/std/min/max) for larger ones; "all" grids up
    to ALL_CAP elements; "stats" statistics always. show_values=False: no values at all.
    highlight: tensors / ops drawn in red. shade: tensors / ops drawn as done (green).
    collapse: a scope name, a list of names, an int depth (2 folds "h.0.attn.*" into "h.0"), or
    "repeats" (of a run of structurally identical sibling scopes h.0 .. h.3, h.0 stays drawn and
    h.1 .. h.3 become one box "h.1 - h.3  x3"): each collapsed scope becomes one box.
    max_nodes: more nodes than this raises TooManyNodesError (a ValueError).
    title, subtitle, legend: the graph's label above the drawing (the legend a small table).
    grad_of: tensor -> gradient array or None to show instead of `.grad` (the stepper shows the
    gradients as they stood at one step of the backward pass).
    explain: a tensor of this graph (or an Explanation): explain_grad(explain, tensor) says why
    its gradient is zero (the drawn `tensor` is the loss); its path is drawn in red and the
    cause is the subtitle."""
    if explain is not None:
        why = explain if isinstance(explain, Explanation) else explain_grad(explain, tensor)
        highlight, subtitle = tuple(highlight) + why.marks(), subtitle or f"{why.cause}: {why.text.split(': ')[0]}"
    if rankdir not in ("LR", "TB"):
        raise ValueError(f"draw_graph: rankdir must be 'LR' or 'TB', got {rankdir!r}")
    if values not in VALUE_MODES:
        raise ValueError(f"draw_graph: values must be one of {', '.join(map(repr, VALUE_MODES))}, got {values!r}")
    if isinstance(max_elements, bool) or not isinstance(max_elements, int) or max_elements < 0:
        raise ValueError(f"draw_graph: max_elements must be an int >= 0, got {max_elements!r}")
    plan = GraphPlan(tensor, collapse)
    n_t, n_op, n_box = plan.count()
    total = n_t + n_op + n_box
    if max_nodes is not None and total > max_nodes:
        raise TooManyNodesError(total, (n_t, n_op, n_box), max_nodes, any(t.scope for t in plan.order))
    grad_of = grad_of or (lambda t: t.grad)
    hot = {plan.node_for(x) for x in highlight} - {None}
    done = {plan.node_for(x) for x in shade} - {None}

    dot = GraphDrawing("tinygrad_tx")
    dot.attr(rankdir=rankdir, fontname=FONT, fontsize="11", nodesep="0.25", ranksep="0.35",
             newrank="true", bgcolor="white")
    label = graph_label(title, subtitle, legend_table(bool(hot), bool(done), bool(plan.boxes)) if legend else None)
    if label:
        dot.attr(label=label, labelloc="t", labeljust="l")
    dot.attr("node", fontname=FONT, fontsize="10")
    dot.attr("edge", color=EDGE, arrowsize="0.7", penwidth="1.1")

    placed = {}                         # cluster scope ("" = top level) -> [(name, attrs)]

    def place(scope, name, **attrs):
        placed.setdefault(scope, []).append((name, attrs))

    for k, t in enumerate(plan.order):
        if plan.visible[k]:
            b = plan.box_of[k]
            scope = plan.boxes[b]["parent"] if b is not None else (t.scope or "")
            node = f"t{k}"
            g = grad_of(t)
            place(scope, node, shape="plain", label=_tensor_label(t, g, show_values, node in hot, node in done,
                                                                  values, max_elements))
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
        place(info["parent"], info["id"],
              label=f'<<B>{esc(info["label"])}</B><BR/><FONT POINT-SIZE="9">{what} inside</FONT>>', **attrs)
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
