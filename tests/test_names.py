"""Names come from the code: Tensor.named, parameters named by their module path, composed ops
naming their steps where the math is written, and viz.labels.label_of for whatever nobody named.
The drawings are checked on their DOT source."""
import pathlib
import re

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from tinygrad_tx import Tensor, functional as F, fused_ops, nn
from transformer import GPT, Block, GPTConfig, MultiHeadAttention, causal_mask, scaled_dot_product_attention
from viz import draw_graph, examples, figures, graph_nodes
from viz.labels import label_of

ROOT = pathlib.Path(__file__).resolve().parents[1]
PLACEHOLDERS = ("tensor", "weight", "bias")


def names(root):
    return {t.name for t in graph_nodes(root)}


def tensor_labels(dot):
    """The bold first line of every tensor box in a drawing's DOT source."""
    return re.findall(r'BGCOLOR="#[0-9a-f]+"><B>(.*?)</B>', dot.source)


def param_names_match(model):
    pairs = model.named_parameters()
    assert pairs
    return [(key, p.name) for key, p in pairs if p.name != key]


# ----------------------------------------------------------------------------- Tensor.named
def test_named_sets_the_name_and_returns_the_same_tensor():
    t = Tensor([1.0, 2.0])
    assert t.named("x") is t and t.name == "x"
    assert (t * 2).named("y").name == "y"
    with pytest.raises(TypeError, match="named: name must be a str, got int 3"):
        t.named(3)


# ----------------------------------------------------------------------------- parameter names
@pytest.mark.parametrize("kw", [{}, {"tie_weights": False}, {"pos": "sinusoidal"}, {"norm": "post", "bias": False}])
def test_gpt_parameter_names_are_their_named_parameters_keys(kw):
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, **kw))
    assert param_names_match(model) == []
    assert model.h[1].attn.c_attn.weight.name == "h.1.attn.c_attn.weight"
    if kw.get("tie_weights", True):              # the tied head's tensor keeps its first name
        assert model.lm_head.tied_weight.name == "wte.weight"
    else:
        assert model.lm_head.weight.name == "lm_head.weight"


def test_block_and_a_users_nested_module_name_their_parameters():
    block = Block(8, 2)
    assert param_names_match(block) == [] and block.mlp.c_fc.bias.name == "mlp.c_fc.bias"

    class Tower(nn.Module):
        def __init__(self):
            self.embed = nn.Linear(3, 8)
            self.layers = nn.ModuleList([Block(8, 2), Block(8, 2)])
            self.scale = nn.Parameter(np.ones(8))            # a parameter assigned directly

    tower = Tower()
    assert param_names_match(tower) == []
    assert tower.layers[1].ln_2.weight.name == "layers.1.ln_2.weight" and tower.scale.name == "scale"


def test_attaching_to_a_parent_later_renames_and_reattaching_renames_again():
    attn = MultiHeadAttention(8, 2)
    assert attn.c_proj.weight.name == "c_proj.weight"
    block = Block(8, 2)
    block.attn = attn                                        # replaces the block's own attention
    assert attn.c_proj.weight.name == "attn.c_proj.weight"
    model = nn.ModuleList([nn.Linear(8, 8), block])          # the block attached under a list
    assert attn.c_proj.weight.name == "1.attn.c_proj.weight" and param_names_match(model) == []
    other = nn.Sequential(block)
    assert attn.c_proj.weight.name == "0.attn.c_proj.weight"
    attn.c_proj = nn.Linear(8, 8)                            # a change deep inside renames from the top
    assert attn.c_proj.weight.name == "0.attn.c_proj.weight" and param_names_match(other) == []


def test_module_scopes_are_unchanged():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8))
    with fused_ops(False):
        logits = model(np.zeros((1, 4), dtype=np.int64))
    scopes = {t.scope for t in graph_nodes(logits)}
    assert {"wte", "wpe", "h.0.ln_1", "h.0.attn.c_attn", "h.1.mlp.c_fc", "ln_f"} <= scopes


# ----------------------------------------------------------------------------- composed ops
def test_softmax_and_log_softmax_name_their_steps_and_leave_the_input_alone():
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, name="z")
    p = x.softmax()
    assert {"max", "z - max", "exp", "sum", "softmax"} <= names(p) and x.name == "z"
    assert {"max", "z - max", "exp", "sum", "logsumexp", "log_softmax"} <= names(x.log_softmax())
    with fused_ops():
        assert x.softmax().name is None                      # the fused node: one op, nothing to name


def test_layer_norm_gelu_and_cross_entropy_name_their_steps():
    x = Tensor(np.random.default_rng(0).normal(size=(2, 4)), requires_grad=True, name="x")
    w, b = Tensor(np.ones(4), requires_grad=True, name="w"), Tensor(np.zeros(4), requires_grad=True, name="b")
    y = F.layer_norm(x, w, b)
    assert {"mean", "xc", "var", "rstd", "xhat", "xhat * weight", "layer_norm"} <= names(y)
    assert (x.name, w.name, b.name) == ("x", "w", "b")
    assert {"0.5 x", "x / sqrt2", "1 + erf", "gelu"} <= names(x.gelu())
    assert {"inner", "1 + tanh", "gelu"} <= names(x.gelu("tanh"))
    loss = F.cross_entropy(x, np.array([1, 3]))
    assert loss.name == "loss" and {"log_probs", "picked", "logsumexp"} <= names(loss)
    assert {"picked"} <= names(F.cross_entropy(x, np.array([1, -1]), ignore_index=-1))


def test_attention_names_q_k_v_scores_mask_and_weights():
    rng = np.random.default_rng(0)
    q, k, v = (Tensor(rng.normal(size=(4, 2)), requires_grad=True, name=n) for n in "QKV")
    y, weights = scaled_dot_product_attention(q, k, v, mask=causal_mask(4))
    assert {"kT", "scores", "mask", "masked_scores", "weights"} <= names(y) and weights.name == "weights"
    assert (q.name, k.name, v.name) == ("Q", "K", "V")
    dead = np.ones((4, 4), dtype=bool)                       # every key blocked: rows zeroed after softmax
    assert {"softmax", "dead rows", "weights"} <= names(scaled_dot_product_attention(q, k, v, mask=dead)[0])
    mha = MultiHeadAttention(4, 2, causal=True)
    x = Tensor(rng.normal(size=(1, 3, 4)), name="x")
    with fused_ops(False):
        out = mha(x)
    assert {"qkv", "q", "k", "v", "q heads", "k heads", "v heads", "scores", "weights", "merged heads"} <= names(out)
    assert out.name == "attn" and x.name == "x"


def test_block_and_gpt_name_residuals_and_logits():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8))
    with fused_ops(False):
        logits, loss = model(np.zeros((1, 4), dtype=np.int64), np.ones((1, 4), dtype=np.int64))
    assert logits.name == "logits" and loss.name == "loss"
    assert {"tok", "pos", "x + attn", "x + mlp", "attn", "mlp"} <= names(loss)


# ----------------------------------------------------------------------------- drawings
def test_a_two_layer_gpt_drawing_has_no_placeholder_labels():
    drawings = [draw_graph(examples.build("gpt"), max_nodes=None)]
    with fused_ops(False):
        model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8))
        idx = np.random.default_rng(0).integers(0, 11, size=(1, 7))
        _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
    drawings.append(draw_graph(loss, max_nodes=None))
    for dot in drawings:
        labels = tensor_labels(dot)
        assert len(labels) > 150
        assert [lab for lab in labels if lab in PLACEHOLDERS] == []
        assert {"h.0.attn.c_attn.weight", "h.1.mlp.c_proj.bias", "wte.weight", "scores", "x + attn"} <= set(labels)


# ----------------------------------------------------------------------------- label_of
def test_label_of_writes_what_made_an_unnamed_tensor():
    x = Tensor(np.ones((2, 3)), requires_grad=True, name="x")
    lin = nn.Linear(3, 4)
    nn.ModuleList([nn.ModuleList([lin])])                    # lin.weight is now "0.0.weight"
    W = Tensor(np.ones((3, 4)), requires_grad=True, name="h.0.attn.c_attn.weight")
    assert label_of(x @ W) == "x @ c_attn.weight"            # a dotted name keeps its last two parts
    assert label_of(W) == "h.0.attn.c_attn.weight"           # ... but a tensor's own label is whole
    assert label_of(x @ W + lin.bias) == "x @ c_attn.weight + 0.bias"
    z = x.named("z")
    assert label_of((z - 1).exp()) == "exp(z - 1)"
    assert label_of(z.exp().named("exp").sum(axis=-1)) == "sum(exp, axis=-1)"
    assert label_of(z + z) == "z + z" and label_of(-z) == "-z" and label_of(-(z + 1)) == "-(z + 1)"
    assert label_of((z + 1) * z) == "(z + 1) * z" and label_of(z - (z + 1)) == "z - (z + 1)"
    assert label_of(z.relu()) == "relu(z)" and label_of(z[0]) == "z[...]" and label_of(z.reshape(3, 2)) == "reshape(z)"
    assert label_of(z ** 2) == "z^2" and label_of(z.T) == "z.T" and label_of(z.max(axis=0)) == "max(z, axis=0)"
    assert label_of(z.masked_fill(np.eye(2, 3, dtype=bool), float("-inf"))) == "masked_fill(z, -inf)"
    assert label_of(Tensor(0.5)) == "0.5" and label_of(Tensor(np.zeros((4, 4)))) == "const (4, 4)"
    assert label_of(Tensor(np.zeros(3), requires_grad=True)) == "leaf (3,)"


def test_label_of_elides_deep_expressions():
    y = Tensor(np.ones(3), requires_grad=True, name="y")
    for _ in range(12):
        y = y * 2 + 1
    text = label_of(y)
    assert len(text) <= 32 and "…" in text and text.endswith("+ 1")
    assert len(label_of(y, max_len=12)) <= 12


# ----------------------------------------------------------------------------- one source
def test_presets_and_figures_have_no_shape_matching_naming_left():
    for path in ("viz/examples.py", "viz/figures.py"):
        src = (ROOT / path).read_text(encoding="utf-8")
        for needle in ("_name_softmax", "_name_attention", "_fill_names", "_name_outputs", "graph_nodes",
                       "toposort", ".parents", "op.name ==", "_walk("):
            assert needle not in src, f"{path} still has {needle!r}"


def test_tx_graph_default_is_the_docs_figure(tmp_path, monkeypatch):
    """`tx graph PRESET --out X.svg` with no other option draws the same DOT source that figures.py
    renders into PRESET.svg (compared as DOT, before layout)."""
    def capture(into):
        def fake_render(dot, path):
            into[pathlib.Path(path).name] = dot.source
            return path
        return fake_render
    figure, tx = {}, {}
    monkeypatch.setattr(figures, "render", capture(figure))
    monkeypatch.setattr(cli, "render", capture(tx))
    for preset in ("attention", "gpt", "neuron"):
        figures.FIGURES[f"{preset}.svg"][2](tmp_path, 0)
        result = CliRunner().invoke(cli.main, ["graph", preset, "--out", str(tmp_path / f"{preset}.svg")])
        assert result.exit_code == 0, result.output
        assert tx[f"{preset}.svg"] == figure[f"{preset}.svg"], preset
    assert "rankdir=TB" in figure["attention.svg"] and "rankdir=LR" in figure["neuron.svg"]
    assert "one causal attention head" in figure["attention.svg"] and "box3d" in figure["gpt.svg"]
    result = CliRunner().invoke(cli.main, ["graph", "attention", "--out", str(tmp_path / "lr.svg"), "--rankdir", "LR"])
    assert result.exit_code == 0 and "rankdir=LR" in tx["lr.svg"]
