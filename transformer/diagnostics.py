"""Diagnostics: what a teacher would point at while a network trains, one JSON line per record.

Two calls per recorded step, around the usual loop:

    _, loss = model(x, y)
    diag.watch(loss)            # BEFORE backward: activations, attention weights, the weights
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    diag.record(step, lr=optimizer.lr)      # AFTER the step: gradients, update ratios; writes a line

`watch` walks the loss graph through the public tensor attributes (`parents`, `op.name`,
`scope`, `name`) before the backward frees it (the training backward drops graph edges as it
goes): it finds the residual sums named "x + attn" / "x + mlp" by the blocks, the inputs of
every non-linearity op (Gelu, Tanh, Sigmoid, Relu; fused or not) and the attention weights that
each attention module keeps in `.weights`. `record` reads `.grad` of every parameter and the
change the optimizer made. Works on any nn.Module: the keys that do not apply are left out.

A record (strict JSON: a non-finite number is written as null):
  step, loss, lr
  params:     {dotted name: {grad_norm, weight_norm, update_ratio}}   update_ratio = ||lr*update|| / ||w||,
              measured as ||w_after - w_before|| / ||w_before|| (the 1e-3 rule of thumb)
  grad_norm:  the global norm of the gradients the optimizer applied (after any clipping)
  residual:   {block scope: {mean, std}}       the residual stream at the block's last "x + ..."
  activations:{scope:op: {mean, std, saturated[, dead]}}   inputs of each non-linearity
  attention:  {scope: {entropy: [per head], q_grad/k_grad/v_grad: [per head]}}

Saturated means in the flat region, where the local derivative is under about 7% of its
maximum: tanh |x| > 2 (tanh'(2) = 0.07), sigmoid |x| > 4 (sigma'(4) / sigma'(0) = 0.07),
GELU x < -3 (gelu'(-3) = -0.012, the flat left tail; its right side is linear, not flat),
ReLU x <= 0 (derivative exactly 0; `dead` is the fraction of units, the last axis, that are
<= 0 for every row of the batch: they pass no gradient at all this step).

Shapes: B batch, T time, C channels, H heads, hs head size."""
import json
import math
import os
import pathlib

import numpy as np

from tinygrad_tx import backend
from tinygrad_tx.autograd import toposort

SATURATION = {                   # op name -> (the flat region of its input, in words; test)
    "Tanh": ("|x| > 2", lambda x: np.abs(x) > 2),
    "Sigmoid": ("|x| > 4", lambda x: np.abs(x) > 4),
    "Gelu": ("x < -3", lambda x: x < -3),
    "Relu": ("x <= 0", lambda x: x <= 0),
}


def _norm(arr):
    """L2 norm in float64 (a float32 sum of squares loses digits on big tensors)."""
    a = backend.to_numpy(arr).astype(np.float64, copy=False)
    return math.sqrt(float(np.vdot(a, a)))


def _finite(x):
    """Strict JSON has no NaN or Infinity: those become null."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def attention_entropy(weights):
    """Mean over batch and queries of -sum_k w log w (nats), per head: weights (B, H, Tq, Tk) ->
    (H,). 0 = every query looks at one key; log(Tk) = uniform. Blocked keys (w = 0) add 0."""
    w = backend.to_numpy(weights).astype(np.float64)
    plogp = np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0)
    return (-plogp.sum(-1)).mean(axis=(0, 2))                            # (H,)


def _nonlinearity(t):
    """(kind, input tensor) when t is the output of a non-linearity, else (None, None). The fused
    ops are one node each; a composed GELU is the tensor named "gelu" = ("0.5 x") * (1 + ...),
    whose input is the full-shaped factor of "0.5 x" (its tanh form's inner Tanh is part of it)."""
    if t.op is None:
        return None, None
    if t.op.name in SATURATION:
        x = t.parents[0]
        return (None, None) if t.op.name == "Tanh" and x.name == "inner" else (t.op.name, x)
    if t.name == "gelu" and t.parents and t.parents[0].name == "0.5 x":
        return "Gelu", next(p for p in t.parents[0].parents if p.shape == t.shape)
    return None, None


def _activation_stats(op_name, x):
    x = backend.to_numpy(x)
    row = {"mean": float(x.mean()), "std": float(x.std()), "saturated": float(SATURATION[op_name][1](x).mean())}
    if op_name == "Relu":
        row["dead"] = float((x <= 0).reshape(-1, x.shape[-1]).all(axis=0).mean())
    return row


def _head_grad_norms(parts, n_head):
    """Gradient norm per head of each projection: parts = [(names, weight grad (C, k C), bias
    grad or None)], the k C output columns being k blocks of C = H heads x hs each."""
    out = {}
    for names, gw, gb in parts:
        C_in, kC = gw.shape
        w = backend.to_numpy(gw).astype(np.float64).reshape(C_in, len(names), n_head, -1)  # (C, k, H, hs)
        sq = (w ** 2).sum(axis=(0, 3))                                                     # (k, H)
        if gb is not None:
            sq = sq + (backend.to_numpy(gb).astype(np.float64).reshape(len(names), n_head, -1) ** 2).sum(-1)
        for i, name in enumerate(names):
            out[f"{name}_grad"] = np.sqrt(sq[i]).tolist()
    return out


def read_records(path):
    """The complete records of a diagnostics.jsonl: a last line still being written (no newline
    yet) or a line that does not parse is skipped, so a reader never fails on a live file."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for line in text.split("\n")[:-1]:          # the piece after the last newline is incomplete
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


class Diagnostics:
    """Records a model's training statistics. With `path` each record is one JSON line there
    (nothing is kept in memory, so a long run does not grow); without, they are kept in memory.
    `records` lists them either way. start_step: records from this step on are dropped from an
    existing file (a resumed run redoes them); 0 starts the file afresh; None appends to it."""

    def __init__(self, model, path=None, start_step=0):
        self.model = model
        self.path = None if path is None else pathlib.Path(path)
        self._memory = []
        self._watched = None
        if self.path is not None and start_step is not None and self.path.exists():
            keep = [r for r in read_records(self.path) if r.get("step", -1) < start_step]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in keep), encoding="utf-8")
            os.replace(tmp, self.path)          # atomic: a reader sees the old file or the new one

    @property
    def records(self):
        return read_records(self.path) if self.path is not None else self._memory

    def _attention_modules(self):
        """(scope, module) for modules that keep attention weights and have heads."""
        return [(name, m) for name, m in self.model.named_modules() if hasattr(m, "n_head") and hasattr(m, "weights")]

    def watch(self, loss):
        """Call before backward: statistics of the forward pass that made `loss`, and a copy of
        the weights (to measure the update)."""
        residual, activations, counts = {}, {}, {}
        for t in toposort(loss):                 # parents before children, forward order
            if t.name and t.name.startswith("x + ") and t.scope:
                x = backend.to_numpy(t.data)
                residual[t.scope] = {"mean": float(x.mean()), "std": float(x.std())}   # the block's last one wins
            kind, x = _nonlinearity(t)
            if kind:
                base = f"{t.scope}:{kind.lower()}" if t.scope else kind.lower()
                k = counts.get(base, 0)
                counts[base] = k + 1
                activations[base if k == 0 else f"{base}.{k}"] = _activation_stats(kind, x.data)
        attention = {}
        for name, m in self._attention_modules():
            if m.weights is not None and m.weights.ndim == 4:
                attention[name] = {"entropy": attention_entropy(m.weights.data).tolist()}
        before = {name: backend.to_numpy(p.data).copy() for name, p in self.model.named_parameters()}
        self._watched = {"loss": float(loss.item()) if loss.size == 1 else None, "residual": residual,
                         "activations": activations, "attention": attention, "before": before}

    def record(self, step, lr=None, loss=None, **extra):
        """Call after the optimizer step: gradients, weight norms, update ratios (if `watch` saw
        this step's forward), written as one line. Returns the record (a dict)."""
        w = self._watched or {}
        self._watched = None
        before = w.get("before", {})
        params, total = {}, 0.0
        for name, p in self.model.named_parameters():
            row = {"grad_norm": None if p.grad is None else _norm(p.grad), "weight_norm": _norm(p.data)}
            if row["grad_norm"] is not None:
                total += row["grad_norm"] ** 2
            if name in before:
                w0 = before[name].astype(np.float64)
                row["update_ratio"] = _norm(backend.to_numpy(p.data) - w0) / (_norm(w0) or float("nan"))
            params[name] = row
        rec = {"step": int(step), "loss": loss if loss is not None else w.get("loss"),
               "lr": None if lr is None else float(lr), "grad_norm": math.sqrt(total), "params": params}
        attention = w.get("attention", {})
        for name, m in self._attention_modules():
            parts = self._projections(m)
            if parts and all(g is not None for _, g, _ in parts):
                attention.setdefault(name, {}).update(_head_grad_norms(parts, m.n_head))
        for key in ("residual", "activations"):
            if w.get(key):
                rec[key] = w[key]
        if attention:
            rec["attention"] = attention
        rec.update(extra)
        rec = _finite(rec)
        if self.path is not None:
            self._append(json.dumps(rec, allow_nan=False) + "\n")
        else:
            self._memory.append(rec)
        return rec

    @staticmethod
    def _projections(m):
        """The q/k/v projections of an attention module, as (names, weight grad, bias grad)."""
        def grads(lin):
            return lin.weight.grad, (lin.bias.grad if getattr(lin, "bias", None) is not None else None)
        if hasattr(m, "c_attn"):
            return [(("q", "k", "v"), *grads(m.c_attn))]
        if hasattr(m, "c_q") and hasattr(m, "c_kv"):
            return [(("q",), *grads(m.c_q)), (("k", "v"), *grads(m.c_kv))]
        return []

    def _append(self, line):
        """One write() of the whole line on an O_APPEND descriptor: lines never interleave and a
        reader sees either none of a line or all of it once the newline is there."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
