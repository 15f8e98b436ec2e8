"""viz.graph and viz.render: graph structure, labels before/after backward, scope clusters,
collapsing, the node limit, escaping, rendering with dot / graphviz-pure / neither, anomalies,
and the `tx graph` command."""
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from tinygrad_tx import AnomalyError, Tensor, detect_anomaly, scope
from tinygrad_tx.autograd import toposort
from viz import draw_anomaly, draw_graph, graph_nodes, render, svg_text
from viz import graphviz_program
from viz.graph import GRAD, HOT, GraphPlan
from viz.graphviz_program import GraphvizNotFoundError

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
NODE = re.compile(r"^\s*((?:t|op|box)\d+|legend|anomaly_op) \[", re.M)
EDGE = re.compile(r"^\s*(\S+) -> (\S+)", re.M)


def small():
    """c = sum(a * b): 4 tensors, 2 ops."""
    a = Tensor([1.0, 2.0, 3.0], requires_grad=True, name="a")
    b = Tensor(2.0, requires_grad=True, name="b")
    c = (a * b).sum()
    c.name = "c"
    return a, b, c


def nodes_of(dot):
    return NODE.findall(dot.source)


def edges_of(dot):
    return EDGE.findall(dot.source)


def node_line(dot, name):
    return next(line for line in dot.source.splitlines() if line.strip().startswith(f"{name} ["))


def grids(line):
    """(value cells, gradient cells) of a tensor label: the texts of its grid cells."""
    value, _, grad = line.partition(f'COLOR="{GRAD}"')
    cell = re.compile(r'<TD ALIGN="RIGHT">([^<]*)</TD>')
    return cell.findall(value), cell.findall(grad)


def clusters_of(dot):
    """node name -> the labels of the clusters it sits in, outermost first."""
    stack, where = [], {}
    for line in dot.source.splitlines():
        s = line.strip()
        if s.startswith("subgraph cluster_"):
            stack.append(None)
        elif "label=<<FONT" in s and stack and not NODE.match(line):
            stack[-1] = re.search(r'<FONT[^>]*>(.*?)</FONT>', s).group(1)
        elif s == "}" and stack:
            stack.pop()
        else:
            m = NODE.match(line)
            if m:
                where[m.group(1)] = list(stack)
    return where


# ----------------------------------------------------------------------------- structure
def test_graph_nodes_is_a_deterministic_topological_order():
    a, b, c = small()
    order = graph_nodes(c)
    assert order[-1] is c and len(order) == 4
    pos = {id(t): i for i, t in enumerate(order)}
    assert all(pos[id(p)] < pos[id(t)] for t in order for p in t.parents)
    assert [id(t) for t in graph_nodes(c)] == [id(t) for t in order]
    assert order[0] is a and order[1] is b        # first parent numbered first


def test_node_and_edge_counts_and_stable_names():
    a, b, c = small()
    dot = draw_graph(c, legend=False)
    names = nodes_of(dot)
    assert sorted(names) == ["op2", "op3", "t0", "t1", "t2", "t3"]
    assert sorted(edges_of(dot)) == sorted([("t0", "op2"), ("t1", "op2"), ("op2", "t2"), ("t2", "op3"), ("op3", "t3")])
    assert "Mul" in node_line(dot, "op2") and "Sum" in node_line(dot, "op3")
    assert "axis=None" in node_line(dot, "op3")


def test_labels_before_backward_say_not_computed_never_zero():
    a, b, c = small()
    dot = draw_graph(c)
    for name in ("t0", "t1", "t2", "t3"):
        line = node_line(dot, name)
        assert "grad: not computed yet" in line
        assert "grad 0" not in line and "grad [0" not in line
    assert "<B>a</B>" in node_line(dot, "t0") and "(3,)" in node_line(dot, "t0")
    assert "float32" in node_line(dot, "t0") and grids(node_line(dot, "t0")) == (["1", "2", "3"], [])
    assert "<B>a * b</B>" in node_line(dot, "t2")           # unnamed: labelled by what made it


def test_labels_after_backward_show_gradients():
    a, b, c = small()
    c.backward()
    dot = draw_graph(c)
    assert grids(node_line(dot, "t0")) == (["1", "2", "3"], ["2", "2", "2"])
    assert grids(node_line(dot, "t1")) == (["2"], ["6"])
    assert "not computed yet" not in dot.source


def test_large_tensors_show_statistics_and_constants_say_so():
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(5, 13)), requires_grad=True, name="x")     # 65 elements: more than 64
    k = Tensor(rng.normal(size=(5, 13)), name="k")
    loss = (x * k).sum()
    assert "mean" in node_line(draw_graph(loss), "t0")
    loss.backward()
    line = node_line(draw_graph(loss), "t0")
    d = x.numpy()
    assert f"mean {d.mean():.4g}" in line and f"max {d.max():.4g}" in line
    assert f"grad mean {x.grad.mean():.4g}" in line
    assert "no grad (constant)" in node_line(draw_graph(loss), "t1")
    quiet = draw_graph(loss, show_values=False)
    assert "mean" not in quiet.source and "grad" not in node_line(quiet, "t0")


def test_bad_rankdir_is_rejected():
    with pytest.raises(ValueError, match="rankdir"):
        draw_graph(small()[2], rankdir="RL")


# ----------------------------------------------------------------------------- scopes
def scoped():
    """Two blocks, each with attn and mlp sub-scopes, as nn modules tag them."""
    x = Tensor(np.ones((2, 3)), requires_grad=True, name="x")
    bias = Tensor(np.zeros(3), requires_grad=True, name="bias")       # shared by both blocks
    for i in range(2):
        w = Tensor(np.full((3, 3), 0.1 * (i + 1)), requires_grad=True, name=f"w{i}")
        with scope(f"blk.{i}"):
            with scope("attn"):
                h = (x @ w).tanh()
            with scope("mlp"):
                h = h * 2.0 + bias
            x = x + h
    loss = x.sum()
    loss.name = "loss"
    return loss


def test_one_cluster_per_scope_nested_by_dots():
    loss = scoped()
    dot = draw_graph(loss)
    where = clusters_of(dot)
    order = graph_nodes(loss)
    for k, t in enumerate(order):
        if t.op is not None and t.scope:
            parts = t.scope.split(".")
            expected = [".".join(parts[:i + 1]) for i in range(len(parts))]
            assert where[f"op{k}"] == expected, (t.scope, where[f"op{k}"])
    assert where["t0"] == []                       # x: top level
    assert dot.source.count("subgraph cluster_") == 1 + 2 + 4      # blk, blk.0, blk.1, 4 leaves


def test_collapse_by_depth_makes_one_box_per_scope():
    loss = scoped()
    full = draw_graph(loss, legend=False)
    folded = draw_graph(loss, collapse=2, legend=False)
    boxes = [n for n in nodes_of(folded) if n.startswith("box")]
    assert len(boxes) == 2
    assert len(nodes_of(folded)) < len(nodes_of(full))
    assert "blk.0" in node_line(folded, "box0") and "ops" in node_line(folded, "box0")
    assert "box3d" in node_line(folded, "box0")
    edges = edges_of(folded)
    bias = "t" + str(next(k for k, t in enumerate(graph_nodes(loss)) if t.name == "bias"))
    assert (bias, "box0") in edges and (bias, "box1") in edges     # a leaf used by two boxes
    outs = [dst for src, dst in edges if src == "box0"]
    assert outs and all(dst.startswith("t") for dst in outs)       # an output tensor
    assert any(src in outs for src, dst in edges if dst == "box1")  # which feeds block 1
    order = GraphPlan(loss).order
    assert not [n for n in nodes_of(folded) if n.startswith("op") and order[int(n[2:])].scope.startswith("blk.")]
    # leaves used only inside one block (its weight, the constant 2.0, here also the input x) are
    # counted in its box, not drawn
    assert "<B>w0</B>" not in folded.source and "<B>x</B>" not in folded.source
    assert "3 leaves" in node_line(folded, "box0")


def test_collapse_by_name_and_list():
    loss = scoped()
    one = draw_graph(loss, collapse="blk.0", legend=False)
    assert [n for n in nodes_of(one) if n.startswith("box")] == ["box0"]
    assert "blk.1.attn" in one.source                              # the other block stays open
    both = draw_graph(loss, collapse=["blk.0.attn", "blk.1"], legend=False)
    assert len([n for n in nodes_of(both) if n.startswith("box")]) == 2
    with pytest.raises(ValueError, match="no scope 'nope'.*blk.0.attn"):
        draw_graph(loss, collapse="nope")
    with pytest.raises(ValueError, match="at least 1"):
        draw_graph(loss, collapse=0)


def test_node_limit_error_suggests_collapse():
    x = Tensor([1.0], requires_grad=True)
    y = x
    with scope("deep"):
        for _ in range(200):
            y = y * 1.01
    with pytest.raises(ValueError) as info:
        draw_graph(y.sum(), max_nodes=100)
    msg = str(info.value)
    assert "603 nodes (402 tensors, 201 ops" in msg and "max_nodes=100" in msg and "collapse=" in msg
    assert len(nodes_of(draw_graph(y.sum(), collapse=1))) < 10


# ----------------------------------------------------------------------------- escaping
NASTY = ['a"b{c}|d<e>&f', "<script>alert(1)</script>", "\\N back\\slash", "it's [x] ->"]


def nasty_graph():
    with scope('s<"x">|{y}'):
        ts = [Tensor([float(i + 1)], requires_grad=True, name=n) for i, n in enumerate(NASTY)]
        out = ts[0] * ts[1] + ts[2] * ts[3]
    out.name = "</TD></TR></TABLE>>];x -> y [label=\"pwn"
    return out.sum()


def test_escaping_in_the_dot_source():
    dot = draw_graph(nasty_graph(), title="<b>title</b>")
    assert "<script>" not in dot.source
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dot.source
    assert "a&quot;b{c}|d&lt;e&gt;&amp;f" in dot.source
    assert "&lt;b&gt;title&lt;/b&gt;" in dot.source
    assert len(edges_of(dot)) == 11


@needs_dot
def test_escaped_names_render_as_plain_text():
    svg = svg_text(draw_graph(nasty_graph(), title="<b>title</b>"))
    assert "<script" not in svg
    for text in ("&lt;script&gt;alert(1)&lt;/script&gt;", "a&quot;b{c}|d&lt;e&gt;&amp;f", "\\N back\\slash",
                 "s&lt;&quot;x&quot;&gt;|{y}", "&lt;/TD&gt;&lt;/TR&gt;&lt;/TABLE&gt;&gt;];x", "&lt;b&gt;title"):
        assert text in svg, text
    assert svg.count('class="node"') == 8 + 4              # tensors, ops (the legend is the graph label)


# ----------------------------------------------------------------------------- rendering
@needs_dot
@pytest.mark.parametrize("ext,magic", [("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF"), ("dot", b"digraph")])
def test_render_each_format(tmp_path, ext, magic):
    path = render(small()[2], tmp_path / "sub" / f"g.{ext}", rankdir="TB")
    assert path == tmp_path / "sub" / f"g.{ext}"
    assert path.read_bytes().startswith(magic)


def test_render_rejects_unknown_extension_and_options_for_a_digraph(tmp_path):
    with pytest.raises(ValueError, match=r"\.jpg.*\.svg"):
        render(small()[2], tmp_path / "g.jpg")
    with pytest.raises(TypeError, match="only apply to a tensor"):
        render(draw_graph(small()[2]), tmp_path / "g.dot", collapse=1)


def _no_dot(monkeypatch):
    real = shutil.which
    monkeypatch.setattr(graphviz_program.shutil, "which", lambda name, *a, **k: None if name == "dot" else real(name, *a, **k))


def test_fallback_to_graphviz_pure(tmp_path, monkeypatch):
    _no_dot(monkeypatch)
    found = graphviz_program.find_program()
    if found is None:
        pytest.skip("graphviz-pure is not installed")
    assert found[1] == "graphviz-pure"
    loss = nasty_graph()
    assert render(loss, tmp_path / "g.svg").read_text().count('class="node"') == 12
    assert render(loss, tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(GraphvizNotFoundError, match="cannot write pdf") as info:
        render(loss, tmp_path / "g.pdf")
    assert info.value.dot_path == tmp_path / "g.dot" and info.value.dot_path.exists()
    assert "<svg" in draw_graph(loss)._repr_mimebundle_()["image/svg+xml"]      # Jupyter, no dot


def test_no_layout_program_writes_dot_and_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(graphviz_program.shutil, "which", lambda *a, **k: None)
    monkeypatch.setattr(graphviz_program, "_beside_python", lambda name: None)
    with pytest.raises(GraphvizNotFoundError) as info:
        render(small()[2], tmp_path / "g.png")
    msg = str(info.value)
    assert "apt-get install graphviz" in msg and "brew install graphviz" in msg and "pip install graphviz-pure" in msg
    assert (tmp_path / "g.dot").read_text().startswith("digraph")
    assert str(tmp_path / "g.dot") in msg
    assert render(small()[2], tmp_path / "only.dot").exists()      # .dot needs no program


@needs_dot
def test_jupyter_display_returns_svg():
    bundle = draw_graph(small()[2])._repr_mimebundle_()
    assert "<svg" in bundle["image/svg+xml"]
    assert draw_graph(small()[2])._repr_image_png().startswith(b"\x89PNG")


# ----------------------------------------------------------------------------- anomalies
def test_draw_anomaly_forward_highlights_the_op():
    x = Tensor([-1.0, 2.0], requires_grad=True, name="x")
    with pytest.raises(AnomalyError) as info, detect_anomaly(), np.errstate(invalid="ignore"):
        x.log()
    dot = draw_anomaly(info.value)
    assert HOT in node_line(dot, "op1") and 'penwidth=3' in node_line(dot, "op1")
    assert "Log" in node_line(dot, "op1") and "NaN" in dot.source            # title: the message
    assert HOT not in node_line(dot, "t0")


def test_draw_anomaly_backward_adds_the_op_reading_its_inputs():
    x = Tensor([0.0, 4.0], requires_grad=True, name="x")
    with pytest.raises(AnomalyError) as info, detect_anomaly(), np.errstate(divide="ignore"):
        x.sqrt().sum().backward()
    err = info.value
    assert err.tensor is x and err.op.name == "Sqrt"
    dot = draw_anomaly(err)
    assert HOT in node_line(dot, "anomaly_op") and "Sqrt" in node_line(dot, "anomaly_op")
    assert ("t0", "anomaly_op") in edges_of(dot) and ("anomaly_op", "t0") in edges_of(dot)


def test_engine_toposort_agrees_with_graph_nodes_on_grad_tensors():
    loss = scoped()
    ours = [t for t in graph_nodes(loss) if t.requires_grad]
    assert {id(t) for t in ours} == {id(t) for t in toposort(loss)}


# ----------------------------------------------------------------------------- CLI
# the `presets` fixture (a one-preset PRESETS named "tiny") is in conftest.py


@needs_dot
def test_cli_graph_writes_each_format(tmp_path, presets):
    runner = CliRunner()
    r = runner.invoke(cli.main, ["graph", "tiny", "--out", str(tmp_path / "g.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")
    r = runner.invoke(cli.main, ["graph", "tiny", "--out", str(tmp_path / "g"), "--format", "dot",
                                 "--collapse", "1", "--no-values", "--rankdir", "TB"])
    assert r.exit_code == 0, r.output
    src = (tmp_path / "g.dot").read_text()
    assert "box3d" in src and "rankdir=TB" in src
    assert not [line for line in src.splitlines() if re.match(r"\s*t\d+ \[", line) and "grad" in line]


def test_cli_graph_bad_input_is_one_line(tmp_path, presets):
    runner = CliRunner()
    for args, needle in [(["graph", "nope"], "unknown preset 'nope'; valid names: tiny"),
                         (["graph", "tiny", "--out", str(tmp_path / "g.jpg")], "cannot tell the format"),
                         (["graph", "tiny", "--out", str(tmp_path / "g.svg"), "--format", "png"], "does not match")]:
        r = runner.invoke(cli.main, args)
        assert r.exit_code != 0 and needle in r.output, r.output
        assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert "tx graph neuron" in runner.invoke(cli.main, ["graph", "--help"]).output
