"""How a drawing is laid out and what it shows: top to bottom by default, the legend in the graph
label (not a node), every value and gradient of a small tensor as a grid, repeated blocks
folded into one box (found by structure, not by name), the preset drawings' widths, the `tx`
flags that choose all this, and, in headless Chromium, that no text overflows its node with
either layout program (system `dot` or graphviz-pure)."""
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from browser import chromium
from tinygrad_tx import Tensor, backend, fused_ops, scope
from transformer import GPT, GPTConfig
from viz import draw_graph, explore, frame_graph, graph_nodes, graphviz_program, svg_text, trace_backward
from viz import examples
from viz.graph import GRAD, GraphPlan

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
CELL = re.compile(r'<TD ALIGN="RIGHT">([^<]*)</TD>')


def node_line(dot, name):
    return next(line for line in dot.source.splitlines() if line.strip().startswith(f"{name} ["))


def grids(line):
    """(value cells, gradient cells) of a tensor label: the texts of its grid cells."""
    value, _, grad = line.partition(f'COLOR="{GRAD}"')
    return CELL.findall(value), CELL.findall(grad)


def graph_attrs(dot):
    """The graph-level attribute lines (`label=...`, `rankdir=...`) of a drawing's source."""
    return "\n".join(line for line in dot.source.splitlines() if line.startswith("\t") and "=" in line
                     and not re.match(r"\t\s*\S+ \[|\t\s*\S+ -> ", line))


def times_k(x_arr, k_arr):
    """loss = sum(x * k) after backward: dL/dx = k, a gradient a reader can check by eye."""
    x = Tensor(x_arr, requires_grad=True, name="x")
    k = Tensor(k_arr, name="k")
    loss = (x * k).sum()
    loss.backward()
    return x, k, loss


# ----------------------------------------------------------------------------- layout, legend
def test_top_to_bottom_by_default_and_the_legend_is_the_graph_label():
    _, _, loss = times_k(np.ones(3), np.full(3, 2.0))
    dot = draw_graph(loss)
    assert "rankdir=TB" in dot.source
    assert not re.search(r"^\s*legend \[", dot.source, re.M)
    attrs = graph_attrs(dot)
    assert "leaf needing grad" in attrs and "constant (no grad)" in attrs and "labelloc=t" in attrs
    assert "rankdir=LR" in draw_graph(loss, rankdir="LR").source
    titled = graph_attrs(draw_graph(loss, title="my title", subtitle="a second line"))
    assert "my title" in titled and "a second line" in titled and "leaf needing grad" in titled
    bare = draw_graph(loss, legend=False)
    assert "leaf needing grad" not in bare.source and "label=<<TABLE BORDER=\"0\" CELLSPACING" not in bare.source


# ----------------------------------------------------------------------------- values
def test_a_4x4_tensor_shows_all_16_values_and_16_gradients():
    rng = np.random.default_rng(0)
    xs, ks = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    x, k, loss = times_k(xs, ks)
    line = node_line(draw_graph(loss), "t0")
    values, grads = grids(line)
    assert values == [f"{v:.4g}" for v in x.numpy().reshape(-1)]
    assert grads == [f"{v:.4g}" for v in x.grad.reshape(-1)]
    assert len(values) == 16 and len(grads) == 16
    assert line.count("<TR><TD ALIGN=\"RIGHT\">") == 8                # 4 rows of values, 4 of gradients
    assert "mean" not in line


def test_minus_zero_prints_as_zero_and_non_finite_values_are_readable():
    x, _, loss = times_k(np.array([-0.0, 1.0, 2.5e-7]), np.array([-0.0, 3.0, 0.0]))
    values, grads = grids(node_line(draw_graph(loss), "t0"))
    assert values == ["0", "1", "2.5e-07"] and grads == ["0", "3", "0"]
    odd = Tensor([float("-inf"), float("inf"), float("nan"), 123456.0], name="odd")
    assert grids(node_line(draw_graph(odd * 1.0), "t0"))[0] == ["-inf", "inf", "nan", "1.235e+05"]


def test_65_elements_show_statistics_and_the_modes_override():
    rng = np.random.default_rng(1)
    x, _, loss = times_k(rng.normal(size=(5, 13)), rng.normal(size=(5, 13)))
    line = node_line(draw_graph(loss), "t0")
    assert grids(line) == ([], []) and f"mean {x.numpy().mean():.4g}" in line and "grad mean" in line
    assert len(grids(node_line(draw_graph(loss, values="all"), "t0"))[0]) == 65
    assert len(grids(node_line(draw_graph(loss, max_elements=65), "t0"))[1]) == 65
    small_x, _, small = times_k(np.ones((2, 2)), np.ones((2, 2)))
    stats = node_line(draw_graph(small, values="stats"), "t0")
    assert grids(stats) == ([], []) and "mean 1" in stats
    quiet = node_line(draw_graph(small, show_values=False), "t0")
    assert grids(quiet) == ([], []) and "grad" not in quiet
    with pytest.raises(ValueError, match="values must be one of"):
        draw_graph(small, values="some")
    with pytest.raises(ValueError, match="max_elements"):
        draw_graph(small, max_elements=-1)


def test_3d_tensors_stack_their_2d_slices_and_long_rows_wrap():
    x, _, loss = times_k(np.arange(8.0).reshape(2, 2, 2), np.ones((2, 2, 2)))
    line = node_line(draw_graph(loss), "t0")
    assert grids(line)[0] == [str(i) for i in range(8)]
    assert line.index("[0, :, :]") < line.index(">3<") < line.index("[1, :, :]") < line.index(">4<")
    _, _, loss = times_k(np.arange(20.0), np.ones(20))           # 1-D: rows of 8, each led by its index
    line = node_line(draw_graph(loss), "t0")
    assert grids(line)[0] == [str(i) for i in range(20)]
    assert re.findall(r"<TR><TD[^>]*><FONT[^>]*>\[(\d+)\]", line.partition(GRAD)[0]) == ["0", "8", "16"]


# ----------------------------------------------------------------------------- repeated blocks
def gpt_loss(n_layer, seed=0):
    with fused_ops(False):
        config = GPTConfig(vocab_size=11, block_size=8, n_layer=n_layer, n_head=2, n_embd=8)
        with backend.fork_rng(seed):
            model = GPT(config)
        tokens = np.random.default_rng(seed).integers(0, 11, size=(1, 7))
        _, loss = model(tokens[:, :-1], tokens[:, 1:])
    return loss


def ops_in(dot, plan, prefix):
    return [n for n in re.findall(r"^\s*(op\d+) \[", dot.source, re.M)
            if (plan.order[int(n[2:])].scope or "").startswith(prefix)]


@pytest.mark.parametrize("n_layer,label", [(2, "h.1  x1"), (3, "h.1 - h.2  x2"), (4, "h.1 - h.3  x3")])
def test_repeats_draws_the_first_block_and_folds_the_rest_into_one_box(n_layer, label):
    loss = gpt_loss(n_layer)
    plan = GraphPlan(loss, "repeats")
    assert [info["label"] for info in plan.boxes.values()] == [label]
    dot = draw_graph(loss, collapse="repeats")
    assert len(re.findall(r"^\s*box\d+ \[", dot.source, re.M)) == 1 and label in node_line(dot, "box0")
    assert ops_in(dot, plan, "h.0.attn") and ops_in(dot, plan, "h.0.mlp")       # h.0 drawn in full
    assert not any(ops_in(dot, plan, f"h.{i}.") for i in range(1, n_layer))
    edges = re.findall(r"^\s*(\S+) -> (\S+)", dot.source, re.M)
    into, out_of = [s for s, d in edges if d == "box0"], [d for s, d in edges if s == "box0"]
    assert len(into) == len(set(into)) == 1 and len(out_of) == 1          # the residual stream in and out
    first_out = plan.order[int(into[0][1:])]
    assert first_out.scope == "h.0" and first_out.op.name == "Add"         # what h.0 hands to h.1
    assert plan.order[int(out_of[0][1:])].scope == f"h.{n_layer - 1}"
    ln_f = [d for s, d in edges if s == out_of[0]]
    assert ln_f and all(plan.order[int(d[2:])].scope == "ln_f" for d in ln_f)


def test_a_graph_without_repeats_draws_unchanged():
    loss = examples.build("attention")
    assert draw_graph(loss, collapse="repeats").source == draw_graph(loss).source
    one = gpt_loss(1)
    assert draw_graph(one, collapse="repeats").source == draw_graph(one).source


def blocks(names, kinds):
    """Sibling scopes under "net", each x -> f(x @ w): kind "tanh" or "exp"."""
    x = Tensor(np.full((2, 3), 0.5), requires_grad=True, name="x")
    for name, kind in zip(names, kinds):
        w = Tensor(np.full((3, 3), 0.1), requires_grad=True, name="w")
        with scope(f"net.{name}"):
            h = x @ w
            x = h.tanh() if kind == "tanh" else h.exp()
    return x.sum()


def test_repeats_are_found_by_structure_not_by_name():
    assert not GraphPlan(blocks(["0", "1", "2"], ["tanh", "exp", "tanh"]), "repeats").boxes
    renamed = GraphPlan(blocks(["first", "second", "third"], ["tanh"] * 3), "repeats")
    assert [i["label"] for i in renamed.boxes.values()] == ["net.second - net.third  x2"]
    split = GraphPlan(blocks(["a", "b", "c", "d"], ["tanh", "tanh", "exp", "exp"]), "repeats")
    assert sorted(i["label"] for i in split.boxes.values()) == ["net.b  x1", "net.d  x1"]


def test_stepper_and_explorer_accept_repeats(tmp_path):
    loss = gpt_loss(2)
    steps = trace_backward(loss)
    frame = frame_graph(loss, steps, 0, collapse="repeats", max_nodes=None)
    assert "h.1  x1" in frame.source and "rankdir=TB" in frame.source
    page = explore(gpt_loss(2), tmp_path / "e.html", collapse="repeats").read_text()
    assert "h.1 &#160;x1" in page                  # dot keeps the double space as a no-break space


# ----------------------------------------------------------------------------- sizes
def preset_svg(name, tmp_path):
    """`tx graph NAME`'s default drawing as an SVG (whatever defaults the preset draws with)."""
    out = tmp_path / f"{name}.svg"
    r = CliRunner().invoke(cli.main, ["graph", name, "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out.read_text()


@needs_dot
@pytest.mark.parametrize("name", ["attention", "gpt-block", "layernorm"])
def test_preset_drawings_fit_1600pt_wide(name, tmp_path):
    width = float(re.search(r'<svg width="([\d.]+)pt"', preset_svg(name, tmp_path)).group(1))
    assert width <= 1600, (name, width)


# ----------------------------------------------------------------------------- CLI
def test_cli_rankdir_and_collapse_repeats(tmp_path):
    runner = CliRunner()
    for args, needle in [([], "rankdir=TB"), (["--rankdir", "LR"], "rankdir=LR"),
                         (["--collapse", "repeats"], "h.1  x1"), (["--collapse", "h.1"], "box3d")]:
        out = tmp_path / "g.dot"
        r = runner.invoke(cli.main, ["graph", "gpt", "--out", str(out)] + args)
        assert r.exit_code == 0, r.output
        assert needle in out.read_text(), args


def test_cli_collapse_0_draws_every_node_and_limits_name_cli_flags(tmp_path):
    runner = CliRunner()
    out = tmp_path / "all.dot"
    r = runner.invoke(cli.main, ["graph", "gpt", "--collapse", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    src = out.read_text()
    assert "box3d" not in src and len(re.findall(r"^\s*(?:t|op)\d+ \[", src, re.M)) == sum(GraphPlan(
        examples.build("gpt")).count())
    for args in (["--collapse", "0", "--max-nodes", "100"], ["--collapse", "repeats", "--max-nodes", "50"]):
        r = runner.invoke(cli.main, ["graph", "gpt", "--out", str(tmp_path / "x.svg")] + args)
        assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
        assert "--collapse 2" in r.output and "--collapse repeats" in r.output and "--max-nodes" in r.output
        assert "collapse=" not in r.output and "max_nodes" not in r.output
    r = runner.invoke(cli.main, ["graph", "gpt", "--collapse", "-1"])
    assert r.exit_code == 2 and "--collapse repeats" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli.main, ["graph", "gpt", "--collapse", "nope", "--out", str(tmp_path / "x.dot")])
    assert r.exit_code == 1 and "--collapse: no scope 'nope'" in r.output


def test_cli_step_and_explore_take_rankdir_and_collapse(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli.main, ["step", "neuron", "--all", "--rankdir", "LR", "--collapse", "repeats",
                                 "--out", str(tmp_path / "frames")])
    assert r.exit_code == 0, r.output
    frame = (tmp_path / "frames" / "frame_000.svg").read_text()
    width, height = map(float, re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', frame).groups())
    assert width > 2 * height                         # left to right: a wide strip (TB is taller than wide)
    r = runner.invoke(cli.main, ["explore", "gpt", "--collapse", "0", "--out", str(tmp_path / "all.html")])
    assert r.exit_code == 0, r.output                  # every node: no node limit, as for tx graph
    r = runner.invoke(cli.main, ["explore", "gpt", "--collapse", "repeats", "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 0 and "h.1 &#160;x1" in (tmp_path / "r.html").read_text(), r.output


# ----------------------------------------------------------------------------- Chromium: text fits
# For every node: the union of its shapes' boxes must hold every text's box (SVG user units);
# every text of the drawing (the graph label too) must lie inside the <svg> viewport.
OVERFLOW_JS = """
const svg = document.documentElement, bad = [], tol = 0.5;
const fits = (a, b) => a.x >= b.x - tol && a.y >= b.y - tol && a.x + a.width <= b.x + b.width + tol
                       && a.y + a.height <= b.y + b.height + tol;
let nodes = 0;
for (const node of svg.querySelectorAll("g.node")) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const s of node.querySelectorAll("polygon, path, ellipse")) {
    const b = s.getBBox();
    x0 = Math.min(x0, b.x); y0 = Math.min(y0, b.y); x1 = Math.max(x1, b.x + b.width); y1 = Math.max(y1, b.y + b.height);
  }
  nodes += 1;
  for (const t of node.querySelectorAll("text")) {
    if (t.textContent.trim() && !fits(t.getBBox(), {x: x0, y: y0, width: x1 - x0, height: y1 - y0}))
      bad.push(node.querySelector("title").textContent + ": " + t.textContent);
  }
}
const view = svg.getBoundingClientRect();
for (const t of svg.querySelectorAll("text")) {
  const r = t.getBoundingClientRect();
  if (r.left < view.left - tol || r.right > view.right + tol || r.top < view.top - tol || r.bottom > view.bottom + tol)
    bad.push("outside the viewport: " + t.textContent);
}
return [nodes, bad];
"""


@pytest.fixture(scope="module")
def browser():
    yield from chromium(window=None)


def _only(monkeypatch, kind):
    """Make find_program see only `kind` ("dot" or "graphviz-pure"), or skip."""
    real = shutil.which
    if kind == "graphviz-pure":
        monkeypatch.setattr(graphviz_program.shutil, "which", lambda n, *a, **k: None if n == "dot" else real(n, *a, **k))
    found = graphviz_program.find_program()
    if found is None or found[1] != kind:
        pytest.skip(f"{kind} is not installed")


@pytest.mark.parametrize("kind", ["dot", "graphviz-pure"])
def test_no_text_overflows_its_node_in_chromium(kind, browser, monkeypatch, tmp_path):
    _only(monkeypatch, kind)
    loss = examples.build("attention")
    svg = svg_text(draw_graph(loss, title="attention: one causal head, T=4 (title and legend above)"))
    path = tmp_path / f"attention-{kind}.svg"
    path.write_text(svg, encoding="utf-8")
    browser.get(path.as_uri())
    nodes, bad = browser.execute_script(OVERFLOW_JS)
    assert nodes == sum(GraphPlan(loss).count())
    assert bad == [], bad[:10]
