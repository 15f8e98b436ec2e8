"""The example presets: each builds a small scalar loss whose graph the viz layer draws.
Graphs are walked here through public attributes only (parents, op, op_name, name, scope)."""
import numpy as np
import pytest

from tinygrad_tx import backend, fused_ops, is_fused
from viz import examples


def walk(root):
    """All tensors reachable from root through .parents (constants included)."""
    seen, out, stack = set(), [], [root]
    while stack:
        t = stack.pop()
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
            stack.extend(t.parents)
    return out


def counts(root):
    """(tensor nodes, op nodes, edges): an op node per non-leaf tensor, an edge from each of
    its inputs into the op and one from the op to its output."""
    nodes = walk(root)
    ops = [t for t in nodes if t.op is not None]
    return len(nodes), len(ops), sum(len(t.parents) + 1 for t in ops)


@pytest.mark.parametrize("name", list(examples.PRESETS))
def test_preset_builds_scalar_with_grads(name):
    loss = examples.build(name)
    assert loss.shape == () and loss.op is not None and loss.name == "loss"
    assert np.isfinite(loss.item())
    nodes = walk(loss)
    assert len(nodes) > 3
    leaves = [t for t in nodes if t.op is None and t.requires_grad]
    assert leaves, "a preset needs trainable leaves to show gradients"
    for t in leaves:
        assert t.grad is not None and t.grad.shape == t.shape, t.name
    assert any(t.name not in (None, "loss") for t in nodes if t.op is not None), "intermediates are named"


@pytest.mark.parametrize("name", list(examples.PRESETS))
def test_preset_without_backward_has_no_grads(name):
    loss = examples.build(name, backward=False)
    assert loss.requires_grad
    assert all(t.grad is None for t in walk(loss))


@pytest.mark.parametrize("name", ["neuron", "attention", "gpt"])
def test_preset_is_deterministic_and_leaves_global_rng_alone(name):
    state = backend.get_rng_state()
    a, b = examples.build(name, seed=3), examples.build(name, seed=3)
    assert backend.get_rng_state() == state
    assert a.item() == b.item()
    ga = [t.grad for t in walk(a) if t.op is None and t.requires_grad]
    gb = [t.grad for t in walk(b) if t.op is None and t.requires_grad]
    assert all(np.array_equal(x, y) for x, y in zip(ga, gb))
    assert examples.build(name, seed=4).item() != a.item()


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError) as err:
        examples.build("nope")
    for name in examples.PRESETS:
        assert name in str(err.value)


def test_draw_defaults_name_presets_and_options_override_them():
    assert set(examples.DRAW_DEFAULTS) <= set(examples.PRESETS)
    for name in examples.PRESETS:
        opts = examples.draw_options(name)
        assert opts["rankdir"] in ("TB", "LR") and opts["title"], name
    assert examples.draw_options("gpt")["collapse"] == ["wte", "wpe", "h.0", "h.1", "ln_f", "lm_head"]
    assert examples.draw_options("attention")["rankdir"] == "TB" and "collapse" not in examples.draw_options("attention")
    assert examples.draw_options("gpt", collapse=None, rankdir="LR")["collapse"] is None
    assert examples.draw_options("gpt", rankdir="LR")["rankdir"] == "LR"
    with pytest.raises(ValueError, match="unknown example 'nope'"):
        examples.draw_options("nope")


@pytest.mark.parametrize("name, expected", [
    ("neuron", (10, 6, 15)),
    ("masked-softmax", (11, 7, 18)),
    ("layernorm", (20, 13, 34)),
    ("attention", (22, 14, 38)),
])
def test_graph_sizes_are_stable(name, expected):
    assert counts(examples.build(name, backward=False)) == expected


def test_neuron_is_tanh_of_affine():
    loss = examples.build("neuron")
    by_name = {t.name: t for t in walk(loss)}
    w, x, b, o = (by_name[k] for k in ("w", "x", "b", "o"))
    assert o.op_name == "Tanh"
    assert np.allclose(o.numpy(), np.tanh(w.numpy() @ x.numpy() + b.numpy()), rtol=1e-6)
    # dL/dw = 2 (o - y) (1 - o^2) x
    dn = 2 * (o.numpy() - 1.0) * (1 - o.numpy() ** 2)
    assert np.allclose(w.grad, dn * x.numpy(), rtol=1e-5)


def test_masked_softmax_has_masked_fill_and_zero_grads_in_the_future():
    loss = examples.build("masked-softmax")
    nodes = walk(loss)
    assert any(t.op_name and t.op_name.startswith("MaskedFill") for t in nodes)
    by_name = {t.name: t for t in nodes}
    mask = by_name["mask"].numpy()
    assert mask.dtype == bool and mask[0, 1] and not mask[1, 0]
    assert np.all(by_name["weights"].numpy()[mask] == 0.0)
    assert np.all(by_name["scores"].grad[mask] == 0.0)
    assert np.any(by_name["scores"].grad[~mask] != 0.0)


@pytest.mark.parametrize("name", ["attention", "multihead", "gpt-block", "gpt"])
def test_attention_presets_name_their_pieces(name):
    names = {t.name for t in walk(examples.build(name, backward=False))}
    assert {"q", "k", "v", "scores", "mask", "weights"} <= names


def test_module_presets_carry_scopes():
    scopes = {t.scope for t in walk(examples.build("gpt", backward=False))}
    for s in ("h.0.attn", "h.0.attn.c_attn", "h.1.mlp", "h.1.ln_2", "ln_f", "wte"):
        assert s in scopes, s
    assert "attn.c_attn" in {t.scope for t in walk(examples.build("multihead", backward=False))}
    assert "h.0.mlp.c_fc" in {t.scope for t in walk(examples.build("gpt-block", backward=False))}
    assert "attn" in {t.scope for t in walk(examples.build("attention", backward=False))}


@pytest.mark.parametrize("name", ["softmax-xent", "layernorm", "gpt"])
def test_presets_show_composed_ops_even_in_fused_mode(name):
    plain = counts(examples.build(name, backward=False))
    with fused_ops(True):
        assert counts(examples.build(name, backward=False)) == plain
        assert is_fused()                                                 # the caller's mode is kept
