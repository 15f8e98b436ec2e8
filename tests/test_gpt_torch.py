"""A whole GPT against a small PyTorch reference written here (nanoGPT's model.py in a few
functional lines), float64: logits, loss and every parameter gradient.

The reference reads our state_dict by name. Our Linear weights are (in, out), y = x @ W + b,
so the reference uses the same layout; the tied lm_head is x @ wte.weight^T in both."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

import tinygrad_tx  # noqa: E402
from tinygrad_tx import backend  # noqa: E402
from transformer import GPT, GPTConfig  # noqa: E402

REL_TOL = 1e-8


def torch_sinusoidal(T, C):
    """The PyTorch-tutorial positional table: sin on even channels, cos on odd ones."""
    pos = torch.arange(T, dtype=torch.float64)[:, None]                          # (T, 1)
    div = torch.exp(torch.arange(0, C, 2, dtype=torch.float64) * (-math.log(10000.0) / C))
    pe = torch.zeros(T, C, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


def torch_gpt(P, cfg, idx, targets):
    """nanoGPT forward on the parameter dict P (our names). Returns (logits, loss)."""
    B, T = idx.shape
    C, H = cfg.n_embd, cfg.n_head
    ln = lambda x, n: TF.layer_norm(x, (C,), P[n + ".weight"], P[n + ".bias"], eps=1e-5)  # noqa: E731
    lin = lambda x, n: x @ P[n + ".weight"] + P[n + ".bias"]                            # noqa: E731
    pos = P["wpe.weight"][:T] if cfg.pos == "learned" else torch_sinusoidal(cfg.block_size, C)[:T]
    x = P["wte.weight"][idx] + pos                                               # (B, T, C)
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)

    def attn(x, i):
        q, k, v = lin(x, f"h.{i}.attn.c_attn").split(C, dim=2)                   # (B, T, C) each
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))   # (B, H, T, hs)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // H))
        att = torch.softmax(att.masked_fill(causal, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return lin(y, f"h.{i}.attn.c_proj")

    def mlp(x, i):
        return lin(TF.gelu(lin(x, f"h.{i}.mlp.c_fc"), approximate="none"), f"h.{i}.mlp.c_proj")

    for i in range(cfg.n_layer):
        if cfg.norm == "pre":
            x = x + attn(ln(x, f"h.{i}.ln_1"), i)
            x = x + mlp(ln(x, f"h.{i}.ln_2"), i)
        else:
            x = ln(x + attn(x, i), f"h.{i}.ln_1")
            x = ln(x + mlp(x, i), f"h.{i}.ln_2")
    logits = ln(x, "ln_f") @ P["wte.weight"].T                                   # tied lm_head
    return logits, TF.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def rel_err(ours, theirs):
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-300))


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("pos", ["learned", "sinusoidal"])
@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
def test_gpt_matches_torch(norm, pos, fused):
    tinygrad_tx.set_default_dtype("float64")
    backend.manual_seed(0)
    cfg = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16, norm=norm, pos=pos)
    model = GPT(cfg)
    rng = np.random.default_rng(1)
    for name, p in model.named_parameters():          # larger than the 0.02 init: a sharper test
        p.data[...] = (1.0 if "ln_" in name and name.endswith("weight") else 0.0) + rng.normal(0, 0.3, p.shape)
    idx, tgt = rng.integers(0, 13, (2, 7)), rng.integers(0, 13, (2, 7))

    with tinygrad_tx.fused_ops(fused):          # fused: the training path (one node per attention, ...)
        logits, loss = model(idx, tgt)
        loss.backward()
    P = {n: torch.tensor(a, requires_grad=True) for n, a in model.state_dict().items()}
    assert all(t.dtype == torch.float64 for t in P.values())
    t_logits, t_loss = torch_gpt(P, cfg, torch.from_numpy(idx), torch.from_numpy(tgt))
    t_loss.backward()

    assert rel_err(logits.numpy(), t_logits.detach().numpy()) <= REL_TOL
    assert abs(loss.item() - t_loss.item()) <= REL_TOL * abs(t_loss.item())
    grads = dict(model.named_parameters())
    assert set(grads) == set(P)
    for name, p in grads.items():
        assert p.grad is not None and P[name].grad is not None, name
        assert np.abs(P[name].grad.numpy()).max() > 0, name
        assert rel_err(p.grad, P[name].grad.numpy()) <= REL_TOL, name
