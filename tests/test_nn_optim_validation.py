"""nn and optim refuse bad arguments with one clear line (issue 13), following torch where it
defines the behaviour: load_state_dict checks everything before copying anything; layer sizes;
optimizer and clipping hyperparameters; a single Tensor or a generator as params."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tinygrad_tx import Tensor, optim  # noqa: E402
from tinygrad_tx.nn import Embedding, LayerNorm, Linear, Module  # noqa: E402


class Two(Module):
    def __init__(self):
        self.a = Linear(3, 2)
        self.b = Linear(2, 4)


def _snapshot(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- load_state_dict
@pytest.mark.parametrize("corrupt, error, match", [
    (lambda sd: sd.update({"b.weight": np.zeros((5, 5), np.float32)}), ValueError, r"b.weight has shape \(5, 5\)"),
    (lambda sd: sd.update({"b.bias": [1.0, 2.0, 3.0, 4.0]}), TypeError, "b.bias must be a numeric array, got list"),
    (lambda sd: sd.update({"b.bias": np.array(["a"] * 4)}), TypeError, "b.bias must be a numeric array"),
    (lambda sd: sd.update({"b.bias": np.array([None] * 4)}), TypeError, "of dtype object"),
    (lambda sd: sd.pop("b.bias"), KeyError, r"missing keys \['b.bias'\]"),
    (lambda sd: sd.update({"c.weight": np.zeros(1)}), KeyError, r"unexpected keys \['c.weight'\]"),
])
def test_load_state_dict_changes_nothing_when_a_later_entry_is_bad(corrupt, error, match):
    src, dst = Two(), Two()
    before = _snapshot(dst)
    state = src.state_dict()                     # a.* are valid and come first
    corrupt(state)
    with pytest.raises(error, match=match):
        dst.load_state_dict(state)
    for k, v in _snapshot(dst).items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{k} was overwritten")


def test_load_state_dict_copies_in_place_when_everything_is_valid():
    src, dst = Two(), Two()
    w = dst.a.weight
    dst.load_state_dict(src.state_dict())
    assert dst.a.weight is w                                  # optimizers keep their reference
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k], v)


def test_load_state_dict_not_strict_skips_unknown_but_still_validates():
    src, dst = Two(), Two()
    before = _snapshot(dst)
    state = src.state_dict()
    state["extra"] = "anything"                    # unknown: skipped when not strict
    state["b.bias"] = np.zeros(3, np.float32)      # known but wrong shape: refused, nothing copied
    with pytest.raises(ValueError, match="b.bias"):
        dst.load_state_dict(state, strict=False)
    assert all(np.array_equal(v, before[k]) for k, v in _snapshot(dst).items())


# ----------------------------------------------------------------------------- layer sizes
@pytest.mark.parametrize("make, torch_make", [
    (lambda: Linear(0, 3), lambda: torch.nn.Linear(0, 3)),
    (lambda: Linear(3, 0), lambda: torch.nn.Linear(3, 0)),
    (lambda: Embedding(0, 3), lambda: torch.nn.Embedding(0, 3)),
    (lambda: LayerNorm(0), lambda: torch.nn.LayerNorm(0)),
])
def test_zero_sizes_make_empty_layers_as_torch(make, torch_make):
    ours, theirs = make(), torch_make()
    assert sorted(p.size for p in ours.parameters()) == sorted(p.numel() for p in theirs.parameters())


def test_linear_with_zero_inputs_outputs_its_bias():
    layer = Linear(0, 3)
    y = layer(Tensor(np.zeros((2, 0), np.float32)))
    np.testing.assert_array_equal(y.numpy(), np.broadcast_to(layer.bias.numpy(), (2, 3)))


@pytest.mark.parametrize("make, match", [
    (lambda: Linear(-1, 3), "Linear: in_features must be an int >= 0, got -1"),
    (lambda: Linear(3, -2), "Linear: out_features must be an int >= 0, got -2"),
    (lambda: Linear(2.5, 3), "Linear: in_features must be an int >= 0, got 2.5"),
    (lambda: Linear(True, 3), "Linear: in_features must be an int >= 0, got True"),
    (lambda: Embedding(-1, 3), "Embedding: num_embeddings must be an int >= 0, got -1"),
    (lambda: Embedding(4, -3), "Embedding: embedding_dim must be an int >= 0, got -3"),
    (lambda: LayerNorm(-1), "LayerNorm: dim must be an int >= 0, got -1"),
    (lambda: LayerNorm(4, eps=-1e-5), "LayerNorm: eps must be a number >= 0"),
    (lambda: LayerNorm(4, eps=float("nan")), "LayerNorm: eps must be a number >= 0"),
])
def test_bad_layer_sizes_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("torch_make", [lambda: torch.nn.Linear(-1, 3), lambda: torch.nn.Embedding(-1, 3),
                                        lambda: torch.nn.LayerNorm(-1)])
def test_torch_refuses_negative_sizes_too(torch_make):
    with pytest.raises(RuntimeError):
        torch_make()


# ----------------------------------------------------------------------------- optimizer arguments
def _param():
    p = Tensor(np.ones(3, np.float32), requires_grad=True)
    p.grad = np.full(3, 0.5, np.float32)
    return p


@pytest.mark.parametrize("make, match", [
    (lambda p: optim.SGD(p, lr=-0.1), r"SGD: invalid lr=-0.1"),
    (lambda p: optim.SGD(p, lr=float("nan")), r"SGD: invalid lr=nan"),
    (lambda p: optim.SGD(p, lr=float("inf")), r"SGD: invalid lr=inf"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-1), r"SGD: invalid momentum=-1"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-0.1), r"SGD: invalid weight_decay=-0.1"),
    (lambda p: optim.SGD(p, lr="0.1"), r"SGD: invalid lr='0.1'"),
    (lambda p: optim.AdamW(p, lr=-1e-3), r"AdamW: invalid lr=-0.001"),
    (lambda p: optim.AdamW(p, betas=(1.0, 0.999)), r"AdamW: invalid beta parameter at index 0: 1.0"),
    (lambda p: optim.AdamW(p, betas=(0.9, -0.1)), r"AdamW: invalid beta parameter at index 1: -0.1"),
    (lambda p: optim.AdamW(p, betas=(0.9, float("nan"))), r"AdamW: invalid beta parameter at index 1: nan"),
    (lambda p: optim.AdamW(p, betas=(0.9,)), r"AdamW: betas must be a pair"),
    (lambda p: optim.AdamW(p, eps=-1e-8), r"AdamW: invalid eps=-1e-08"),
    (lambda p: optim.AdamW(p, eps=float("nan")), r"AdamW: invalid eps=nan"),
    (lambda p: optim.AdamW(p, weight_decay=float("inf")), r"AdamW: invalid weight_decay=inf"),
    (lambda p: optim.AdamW([{"params": p, "lr": -1.0}]), r"AdamW: invalid lr=-1.0"),
])
def test_bad_optimizer_arguments_name_the_argument_and_value(make, match):
    with pytest.raises(ValueError, match=match):
        make([_param()])


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.SGD(p, lr=-0.1), lambda p: torch.optim.AdamW(p, lr=float("nan")),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=-1), lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=-0.1),
    lambda p: torch.optim.AdamW(p, betas=(1.0, 0.999)), lambda p: torch.optim.AdamW(p, betas=(0.9, -0.1)),
    lambda p: torch.optim.AdamW(p, eps=-1e-8),
])
def test_torch_refuses_the_same_optimizer_arguments(make):
    with pytest.raises(ValueError):
        make([torch.ones(3, requires_grad=True)])


def test_edge_values_torch_accepts_are_accepted():
    optim.SGD([_param()], lr=0.0)
    optim.AdamW([_param()], lr=0.0, betas=(0.0, 0.0), eps=1e-30, weight_decay=0.0)


def test_adamw_eps_zero_is_refused_a_zero_gradient_would_update_by_nan():
    with pytest.raises(ValueError, match=r"AdamW: invalid eps=0.0 \(must be > 0"):
        optim.AdamW([_param()], eps=0.0)


@pytest.mark.parametrize("cls, kw", [(optim.SGD, {"lr": 0.1}), (optim.SGD, {"lr": 0.1, "momentum": 0.9}),
                                     (optim.AdamW, {"lr": 0.1})])
def test_a_single_tensor_as_params_is_that_one_parameter(cls, kw):
    # iterating a lone tensor would walk its rows and train nothing; torch refuses it, we take it as [w]
    w = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    ref = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    opt, opt_ref = cls(w, **kw), cls([ref], **kw)
    assert opt.params() == [w]
    for _ in range(2):
        w.grad = np.arange(6, dtype=np.float32).reshape(2, 3)
        ref.grad = w.grad.copy()
        opt.step()
        opt_ref.step()
    assert (w.numpy() != 1).sum() >= 5, "every element with a gradient must have been updated"
    np.testing.assert_array_equal(w.numpy(), ref.numpy())


@pytest.mark.parametrize("cls, kw", [(optim.SGD, {"lr": 0.1, "momentum": 0.9}), (optim.AdamW, {"lr": 0.1})])
def test_a_generator_or_a_group_with_one_tensor_trains_it(cls, kw):
    for params in (lambda w: (p for p in [w]), lambda w: [{"params": w}]):
        w = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
        opt = cls(params(w), **kw)
        w.grad = np.ones((2, 3), np.float32)
        opt.step()
        assert (w.numpy() < 1).all(), "every element must have been updated"


# ----------------------------------------------------------------------------- clip_grad_norm_
def test_clip_grad_norm_with_one_tensor_as_torch():
    w = Tensor(np.ones(3, np.float32), requires_grad=True)
    w.grad = np.full(3, 10.0, np.float32)
    tw = torch.ones(3, requires_grad=True)
    tw.grad = torch.full((3,), 10.0)
    norm, tnorm = optim.clip_grad_norm_(w, 1.0), torch.nn.utils.clip_grad_norm_(tw, 1.0)
    assert math.isclose(norm, float(tnorm), rel_tol=1e-6)
    np.testing.assert_allclose(w.grad, tw.grad.numpy(), rtol=1e-6)


def test_clip_grad_norm_with_a_generator():
    ws = [Tensor(np.ones(2, np.float32), requires_grad=True) for _ in range(2)]
    for w in ws:
        w.grad = np.full(2, 3.0, np.float32)
    norm = optim.clip_grad_norm_((w for w in ws), 1.0)
    assert math.isclose(norm, 6.0, rel_tol=1e-6)
    assert math.isclose(math.sqrt(sum(float((w.grad ** 2).sum()) for w in ws)), 1.0, rel_tol=1e-5)


def test_clip_grad_norm_max_norm_inf_only_measures_as_torch():
    for max_norm in (float("inf"),):
        w = Tensor(np.ones(3, np.float32), requires_grad=True)
        w.grad = np.full(3, 2.0, np.float32)
        tw = torch.ones(3, requires_grad=True)
        tw.grad = torch.full((3,), 2.0)
        assert math.isclose(optim.clip_grad_norm_(w, max_norm), float(torch.nn.utils.clip_grad_norm_(tw, max_norm)),
                            rel_tol=1e-6)
        np.testing.assert_allclose(w.grad, tw.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("max_norm", [0.0, 0, -1.0, float("nan"), "1.0", None])
def test_clip_grad_norm_refuses_a_bad_max_norm(max_norm):
    w = _param()
    with pytest.raises(ValueError, match=rf"clip_grad_norm_: invalid max_norm={max_norm!r}".replace("(", r"\(")):
        optim.clip_grad_norm_([w], max_norm)
    np.testing.assert_array_equal(w.grad, np.full(3, 0.5, np.float32))        # untouched


def test_numpy_numbers_are_accepted_as_arguments():
    layer = Linear(np.int64(3), np.int32(2))
    assert layer.weight.shape == (3, 2)
    optim.AdamW(layer.parameters(), lr=np.float32(1e-3), betas=(np.float32(0.9), 0.999), eps=np.float64(1e-8))
    layer.weight.grad = np.ones((3, 2), np.float32)
    assert optim.clip_grad_norm_(layer.parameters(), np.float32(1.0)) > 0
