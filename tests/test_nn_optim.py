"""Modules (registration, names, state dicts, modes, scopes), the layers, and the optimizers'
own behaviour. Comparisons with PyTorch's optimizers are in test_optim_torch.py."""
import numpy as np
import pytest

import tinygrad_tx
from tinygrad_tx import Tensor, optim
from tinygrad_tx.nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, Sequential


class Block(Module):
    def __init__(self, C):
        self.attn = Linear(C, C)
        self.ln = LayerNorm(C)

    def forward(self, x):
        self.attn_out = self.attn(x)            # kept so the test can read its scope
        return self.ln(x + self.attn_out)


class Model(Module):
    def __init__(self, V=7, C=4, n_layer=2):
        self.wte = Embedding(V, C)
        self.h = ModuleList([Block(C) for _ in range(n_layer)])
        self.head = Sequential(Linear(C, C), Dropout(0.5), Linear(C, V))

    def forward(self, ids):
        x = self.wte(ids)                       # (B, T, C)
        for block in self.h:
            x = block(x)
        return self.head(x)                     # (B, T, V)


@pytest.fixture
def model():
    tinygrad_tx.manual_seed(0)
    return Model()


EXPECTED_NAMES = ["wte.weight",
                  "h.0.attn.weight", "h.0.attn.bias", "h.0.ln.weight", "h.0.ln.bias",
                  "h.1.attn.weight", "h.1.attn.bias", "h.1.ln.weight", "h.1.ln.bias",
                  "head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"]


# ----------------------------------------------------------------------------- Module
def test_named_parameters_dotted_names(model):
    names = [n for n, _ in model.named_parameters()]
    assert sorted(names) == sorted(EXPECTED_NAMES)
    assert all(p.requires_grad and p.is_leaf for p in model.parameters())
    assert model.num_parameters() == sum(p.size for p in model.parameters())


def test_submodules_registered(model):
    kids = dict(model.children())
    assert list(kids) == ["wte", "h", "head"]
    assert len(model.h) == 2 and isinstance(model.h[1], Block)
    assert len(list(model.modules())) == 1 + 1 + 1 + 2 * 3 + 1 + 3


def test_tied_parameters_appear_once():
    class Tied(Module):
        def __init__(self):
            self.a = Linear(3, 3)
            self.b = Linear(3, 3)
            self.b.weight = self.a.weight

    m = Tied()
    names = [n for n, _ in m.named_parameters()]
    assert names.count("a.weight") == 1 and "b.weight" not in names
    assert len(m.parameters()) == 3
    assert sorted(m.state_dict()) == ["a.bias", "a.weight", "b.bias"]


def test_state_dict_round_trip(model):
    sd = model.state_dict()
    assert sorted(sd) == sorted(EXPECTED_NAMES)
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    tinygrad_tx.manual_seed(1)
    other = Model()
    assert not np.array_equal(other.wte.weight.numpy(), sd["wte.weight"])
    w_before = other.wte.weight
    missing, unexpected = other.load_state_dict(sd, strict=True)
    assert missing == [] and unexpected == []
    assert other.wte.weight is w_before                 # copied in place
    for name, p in other.named_parameters():
        np.testing.assert_array_equal(p.numpy(), sd[name])


def test_state_dict_is_a_copy(model):
    sd = model.state_dict()
    model.wte.weight.data += 1.0
    assert not np.array_equal(sd["wte.weight"], model.wte.weight.numpy())


def test_load_state_dict_strict_errors(model):
    sd = model.state_dict()
    del sd["h.1.ln.bias"]
    sd["h.9.attn.weight"] = np.zeros((4, 4), np.float32)
    with pytest.raises(KeyError) as e:
        model.load_state_dict(sd)
    msg = str(e.value)
    assert "missing" in msg and "h.1.ln.bias" in msg
    assert "unexpected" in msg and "h.9.attn.weight" in msg


def test_load_state_dict_shape_mismatch(model):
    sd = model.state_dict()
    sd["h.0.attn.weight"] = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError) as e:
        model.load_state_dict(sd)
    msg = str(e.value)
    assert "h.0.attn.weight" in msg and "(4, 5)" in msg and "(4, 4)" in msg


def test_load_state_dict_non_strict_ignores(model):
    before = model.state_dict()
    sd = {"wte.weight": np.ones((7, 4), np.float32), "not.a.param": np.zeros(2)}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert unexpected == ["not.a.param"]
    assert sorted(missing) == sorted(set(EXPECTED_NAMES) - {"wte.weight"})
    np.testing.assert_array_equal(model.wte.weight.numpy(), 1.0)
    np.testing.assert_array_equal(model.h[0].attn.weight.numpy(), before["h.0.attn.weight"])


def test_train_eval_recurse_and_dropout(model):
    ids = np.array([[1, 2, 3]])
    assert model.training and model.head[1].training
    model.eval()
    assert not any(m.training for m in model.modules())
    y1, y2 = model(ids).numpy(), model(ids).numpy()
    np.testing.assert_array_equal(y1, y2)               # no dropout: deterministic
    model.train()
    assert all(m.training for m in model.modules())


def test_dropout_identity_in_eval_and_scaled_in_train():
    tinygrad_tx.manual_seed(0)
    d = Dropout(0.25)
    x = Tensor(np.ones((200, 50)))
    y = d(x).numpy()
    kept = y != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    d.eval()
    assert d(x) is x


def test_module_zero_grad(model):
    model(np.array([[1, 2]])).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_scope_tags_module_outputs(model):
    model(np.array([[1, 2, 3]]))
    assert model.h[0].attn_out.scope == "h.0.attn"
    assert model.h[1].attn_out.scope == "h.1.attn"


def test_scope_tags_items_appended_after_assignment():
    class Net(Module):
        def __init__(self):
            self.h = ModuleList()
            self.h.append(Block(3))

        def forward(self, x):
            return self.h[0](x)

    net = Net()
    net(Tensor(np.ones((1, 3))))
    assert net.h[0].attn_out.scope == "h.0.attn"


def test_scope_tags_nested_module_lists():
    class Net(Module):
        def __init__(self):
            self.h = ModuleList([ModuleList([Block(3)])])

        def forward(self, x):
            return self.h[0][0](x)

    net = Net()
    net(Tensor(np.ones((1, 3))))
    assert net.h[0][0].attn_out.scope == "h.0.0.attn"


def test_scope_tags_sequential_items():
    class Net(Module):
        def __init__(self):
            self.mlp = Sequential(Linear(2, 3), Linear(3, 1))

        def forward(self, x):
            return self.mlp(x)

    y = Net()(Tensor(np.ones((1, 2))))
    assert y.scope == "mlp.1"


# ----------------------------------------------------------------------------- layers
def test_linear_shape_and_formula():
    tinygrad_tx.set_default_dtype("float64")
    try:
        lin = Linear(3, 5)
    finally:
        tinygrad_tx.set_default_dtype("float32")
    assert lin.weight.shape == (3, 5) and lin.bias.shape == (5,)
    assert lin.weight.dtype == np.float64
    assert np.abs(lin.weight.numpy()).max() <= 1 / np.sqrt(3)
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    y = lin(Tensor(x))
    assert y.shape == (2, 4, 5)
    np.testing.assert_allclose(y.numpy(), x @ lin.weight.numpy() + lin.bias.numpy(), rtol=1e-12)
    assert Linear(3, 5, bias=False).bias is None
    assert [n for n, _ in Linear(3, 5, bias=False).named_parameters()] == ["weight"]


def test_linear_grads():
    lin = Linear(3, 2)
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    lin(Tensor(x)).sum().backward()
    np.testing.assert_allclose(lin.weight.grad, x.T @ np.ones((4, 2)), rtol=1e-5)
    np.testing.assert_allclose(lin.bias.grad, [4.0, 4.0])


def test_embedding_lookup_and_scatter_add_grad():
    emb = Embedding(5, 3)
    assert emb.weight.shape == (5, 3) and emb.weight.dtype == np.float32
    ids = np.array([[0, 2, 2], [4, 2, 0]])
    out = emb(ids)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out.numpy(), emb.weight.numpy()[ids])
    out.sum().backward()
    counts = np.bincount(ids.ravel(), minlength=5)      # a row used k times gets k gradients
    np.testing.assert_array_equal(emb.weight.grad, np.repeat(counts[:, None], 3, axis=1))
    with pytest.raises(IndexError):
        emb(np.array([5]))
    with pytest.raises(TypeError):
        emb(np.array([1.0]))


def test_layer_norm_matches_formula():
    C = 6
    ln = LayerNorm(C)
    np.testing.assert_array_equal(ln.weight.numpy(), np.ones(C))
    np.testing.assert_array_equal(ln.bias.numpy(), np.zeros(C))
    rng = np.random.default_rng(2)
    ln.weight.data[...] = rng.standard_normal(C)
    ln.bias.data[...] = rng.standard_normal(C)
    x = rng.standard_normal((2, 3, C))
    y = ln(Tensor(x))
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)       # biased, eps inside the sqrt
    ref = (x - mu) / np.sqrt(var + 1e-5) * ln.weight.numpy() + ln.bias.numpy()
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-6)
    # statistics are per token: each (b, t) row is normalised on its own
    z = LayerNorm(C)(Tensor(x)).numpy()
    np.testing.assert_allclose(z.mean(-1), 0.0, atol=1e-6)
    np.testing.assert_allclose(z.var(-1), var[..., 0] / (var[..., 0] + 1e-5), rtol=1e-5)


# ----------------------------------------------------------------------------- optimizers
def _quadratic_step(params, opt, target):
    """loss = sum_i sum((p_i - target_i)^2); one step."""
    opt.zero_grad()
    loss = sum(((p - t) ** 2).sum() for p, t in zip(params, target))
    loss.backward()
    opt.step()
    return loss.item()


def test_sgd_decreases_quadratic():
    p = Tensor(np.array([3.0, -2.0]), requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    losses = [_quadratic_step([p], opt, [np.zeros(2)]) for _ in range(20)]
    assert losses[-1] < 1e-3 * losses[0]
    # one step by hand: p <- p - lr * 2p
    q = Tensor(np.array([1.0]), requires_grad=True)
    _quadratic_step([q], optim.SGD([q], lr=0.1), [np.zeros(1)])
    np.testing.assert_allclose(q.numpy(), [0.8])


def test_optimizer_skips_params_without_grad_and_zero_grad():
    a = Tensor(np.array([1.0]), requires_grad=True)
    b = Tensor(np.array([1.0]), requires_grad=True)
    opt = optim.AdamW([a, b], lr=0.1)
    (a * 2.0).sum().backward()
    opt.step()
    assert b.numpy()[0] == 1.0 and a.numpy()[0] != 1.0
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_optimizer_rejects_bad_params():
    with pytest.raises(ValueError):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError):
        optim.SGD([Tensor([1.0])], lr=0.1)


def test_lr_setter_sets_every_group():
    a = Tensor(np.zeros(1), requires_grad=True)
    b = Tensor(np.zeros(1), requires_grad=True)
    opt = optim.AdamW([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    opt.lr = 0.01
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.01] and opt.lr == 0.01


def _make_params(seed):
    rng = np.random.default_rng(seed)
    return [Tensor(rng.standard_normal((3, 2)), requires_grad=True),
            Tensor(rng.standard_normal((2,)), requires_grad=True)]


def _grads(step):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal((3, 2)), rng.standard_normal((2,))]


@pytest.mark.parametrize("make_opt", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda ps: optim.AdamW([{"params": ps[:1]}, {"params": ps[1:], "weight_decay": 0.0}],
                           lr=0.05, betas=(0.8, 0.99), weight_decay=0.1),
], ids=["sgd_momentum", "adamw_groups"])
def test_optimizer_state_dict_round_trip(make_opt):
    params = _make_params(0)
    opt = make_opt(params)
    for step in range(3):
        for p, g in zip(params, _grads(step)):
            p.grad = g
        opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"param_groups", "state"} and sorted(sd["state"]) == [0, 1]
    assert all("params" not in g for g in sd["param_groups"])

    # two fresh optimizers loaded from the same state dict, over copies of the parameters
    copies = []
    for _ in range(2):
        ps = [Tensor(p.numpy().copy(), requires_grad=True) for p in params]
        o = make_opt(ps)
        o.load_state_dict(sd)
        copies.append((ps, o))
    for step in range(3, 5):
        for ps, o in [(params, opt)] + copies:
            for p, g in zip(ps, _grads(step)):
                p.grad = g
            o.step()
    for ps, _ in copies:
        for p, q in zip(params, ps):
            np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_optimizer_state_dict_is_a_copy():
    params = _make_params(0)
    opt = optim.AdamW(params, lr=0.1)
    for p, g in zip(params, _grads(0)):
        p.grad = g
    opt.step()
    sd = opt.state_dict()
    m = sd["state"][0]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], m)
    assert sd["state"][0]["step"] == 1


def test_optimizer_load_state_dict_group_count_mismatch():
    params = _make_params(0)
    sd = optim.SGD(params, lr=0.1).state_dict()
    two = optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1)
    with pytest.raises(ValueError, match="groups"):
        two.load_state_dict(sd)


def test_clip_grad_norm_clips_and_returns_norm():
    params = _make_params(0)
    grads = _grads(0)
    for p, g in zip(params, grads):
        p.grad = g.copy()
    total = np.sqrt(sum((g ** 2).sum() for g in grads))
    norm = optim.clip_grad_norm_(params, max_norm=0.5)
    assert norm == pytest.approx(total, rel=1e-12)
    new_total = np.sqrt(sum((p.grad ** 2).sum() for p in params))
    assert new_total == pytest.approx(0.5, rel=1e-5)
    for p, g in zip(params, grads):                     # direction unchanged
        np.testing.assert_allclose(p.grad, g * (0.5 / (total + 1e-6)), rtol=1e-12)


def test_clip_grad_norm_no_op_under_limit():
    params = _make_params(0)
    grads = _grads(0)
    for p, g in zip(params, grads):
        p.grad = g.copy()
    norm = optim.clip_grad_norm_(params, max_norm=1e3)
    assert norm < 1e3
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.grad, g)


def test_clip_grad_norm_accepts_a_generator():
    params = _make_params(0)
    for p, g in zip(params, _grads(0)):
        p.grad = g * 100.0
    optim.clip_grad_norm_((p for p in params), max_norm=1.0)
    assert np.sqrt(sum((p.grad ** 2).sum() for p in params)) == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_non_finite_raises():
    p = Tensor(np.zeros(2), requires_grad=True)
    p.grad = np.array([np.inf, 1.0])
    with pytest.raises(FloatingPointError):
        optim.clip_grad_norm_([p], 1.0)
