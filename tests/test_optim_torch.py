"""Optimizers and clip_grad_norm_ against PyTorch: the same float64 parameters, a linear layer +
MSE loss computed in each framework, and the parameters compared after every step."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tinygrad_tx import Tensor, optim  # noqa: E402

STEPS = 5
ATOL = 1e-12


def _data():
    rng = np.random.default_rng(0)
    return {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal((2,)),
            "X": rng.standard_normal((4, 3)), "Y": rng.standard_normal((4, 2))}


def _ours_loss(W, b, d):
    err = Tensor(d["X"]) @ W + b - Tensor(d["Y"])          # (4, 2)
    return (err * err).mean()


def _torch_loss(W, b, d):
    return ((torch.from_numpy(d["X"]) @ W + b - torch.from_numpy(d["Y"])) ** 2).mean()


def _groups(params, spec):
    """spec None: a plain list; else a list of (param indices, group options)."""
    if spec is None:
        return list(params)
    return [{"params": [params[i] for i in idx], **opts} for idx, opts in spec]


CASES = [
    ("SGD", dict(lr=0.1), None),
    ("SGD", dict(lr=0.1, momentum=0.9), None),
    ("SGD", dict(lr=0.1, weight_decay=0.05), None),
    ("SGD", dict(lr=0.05, momentum=0.5, weight_decay=0.1), None),
    ("AdamW", dict(), None),
    ("AdamW", dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1), None),
    ("AdamW", dict(lr=0.05, weight_decay=0.2), [((0,), dict(weight_decay=0.0)), ((1,), dict())]),
    ("AdamW", dict(lr=0.05), [((0,), dict(weight_decay=0.3, lr=0.01)), ((1,), dict(weight_decay=0.0))]),
]
IDS = ["sgd", "sgd_momentum", "sgd_wd", "sgd_momentum_wd", "adamw_default", "adamw_custom",
       "adamw_groups_wd", "adamw_groups_wd_lr"]


def run_both(name, kwargs, spec):
    """Yield (ours, theirs) parameter arrays after each step."""
    d = _data()
    ours = [Tensor(d["W"].copy(), requires_grad=True), Tensor(d["b"].copy(), requires_grad=True)]
    theirs = [torch.tensor(d["W"], requires_grad=True), torch.tensor(d["b"], requires_grad=True)]
    opt = getattr(optim, name)(_groups(ours, spec), **kwargs)
    topt = getattr(torch.optim, name)(_groups(theirs, spec), **kwargs)
    for _ in range(STEPS):
        opt.zero_grad()
        topt.zero_grad()
        _ours_loss(*ours, d).backward()
        _torch_loss(*theirs, d).backward()
        for p, q in zip(ours, theirs):
            np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=0, atol=ATOL)
        opt.step()
        topt.step()
        yield opt, topt, ours, theirs


@pytest.mark.parametrize("name, kwargs, spec", CASES, ids=IDS)
def test_optimizer_matches_torch(name, kwargs, spec):
    for opt, topt, ours, theirs in run_both(name, kwargs, spec):
        for p, q in zip(ours, theirs):
            assert p.dtype == np.float64
            np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=0, atol=ATOL)
    # the optimizer state matches too
    for p, q in zip(ours, theirs):
        st, tst = opt.state.get(id(p), {}), topt.state[q]
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
            if key in st:
                np.testing.assert_allclose(st[key], tst[key].numpy(), rtol=0, atol=ATOL)
        if "step" in st:
            assert st["step"] == int(tst["step"])


def _set_grads(seed, scale):
    rng = np.random.default_rng(seed)
    arrays = [scale * rng.standard_normal((3, 4)), scale * rng.standard_normal((5,))]
    ours = [Tensor(np.zeros_like(a), requires_grad=True) for a in arrays]
    theirs = [torch.zeros(a.shape, dtype=torch.float64, requires_grad=True) for a in arrays]
    for p, q, a in zip(ours, theirs, arrays):
        p.grad = a.copy()
        q.grad = torch.from_numpy(a.copy())
    return ours, theirs, arrays


@pytest.mark.parametrize("max_norm", [0.5, 2.0])
def test_clip_grad_norm_matches_torch(max_norm):
    ours, theirs, _ = _set_grads(0, scale=1.0)
    norm = optim.clip_grad_norm_(ours, max_norm)
    tnorm = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert norm == pytest.approx(float(tnorm), rel=1e-14)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=0, atol=ATOL)


def test_clip_grad_norm_under_limit_is_noop_like_torch():
    ours, theirs, arrays = _set_grads(1, scale=0.01)
    norm = optim.clip_grad_norm_(ours, 10.0)
    tnorm = torch.nn.utils.clip_grad_norm_(theirs, 10.0)
    assert norm == pytest.approx(float(tnorm), rel=1e-14)
    for p, q, a in zip(ours, theirs, arrays):
        np.testing.assert_array_equal(p.grad, a)
        np.testing.assert_allclose(q.grad.numpy(), a, rtol=0, atol=ATOL)
