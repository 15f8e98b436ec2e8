"""Optimizers with PyTorch's update rules, updating parameter arrays in place."""
import math
import numbers

from . import backend, kernels
from .kernels.adamw import adamw_update, adamw_update_xp
from .tensor import Tensor


class Optimizer:
    """Holds param_groups (each a dict with "params" and its hyperparameters) and per-parameter
    state. Pass a list of tensors, or a list of dicts to give groups their own settings."""

    def __init__(self, params, defaults):
        # one tensor is one parameter (iterating it would walk its rows and train nothing);
        # torch refuses it, we take it as [tensor], as clip_grad_norm_ does in both
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for g in groups:
            if isinstance(g["params"], Tensor):
                g = {**g, "params": [g["params"]]}      # a group's "params" may be one tensor (as torch)
            group = {**defaults, **g, "params": list(g["params"])}
            self._check_hyperparameters(group)
            for p in group["params"]:
                if not p.requires_grad:
                    raise ValueError(f"{type(self).__name__}: parameter {p.name or p.shape} does not require grad")
            self.param_groups.append(group)
        self.state = {}                       # id(param) -> dict of arrays and counters

    def _check_hyperparameters(self, group):
        """Refuse settings that make the update meaningless, naming the argument and its value:
        lr, weight_decay, momentum finite and >= 0; eps finite and > 0 (torch allows 0, but then a
        parameter whose gradient is exactly 0 updates by 0 / 0 = NaN); each beta in [0, 1)."""
        name = type(self).__name__
        for key in ("lr", "weight_decay", "momentum", "eps"):
            if key in group:
                v = group[key]
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (math.isfinite(v) and v >= 0):
                    raise ValueError(f"{name}: invalid {key}={v!r} (must be a finite number >= 0)")
        if "eps" in group and not group["eps"] > 0:
            raise ValueError(f"{name}: invalid eps={group['eps']!r} (must be > 0: with 0, a zero gradient "
                             "updates by 0 / 0 = NaN)")
        if "betas" in group:
            betas = group["betas"]
            if len(betas) != 2:
                raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
            for i, b in enumerate(betas):
                if isinstance(b, bool) or not isinstance(b, numbers.Real) or not 0 <= b < 1:
                    raise ValueError(f"{name}: invalid beta parameter at index {i}: {b!r} (must be in [0, 1))")

    @property
    def lr(self):
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        for g in self.param_groups:
            g["lr"] = value

    def params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self):
        for p in self.params():
            p.grad = None

    def state_dict(self):
        """{"param_groups": hyperparameters per group, "state": {index: {name: array or number}}}
        with parameters numbered in group order (as PyTorch does)."""
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        state = {}
        for i, p in enumerate(self.params()):
            if id(p) in self.state:
                state[i] = {k: (backend.to_numpy(v).copy() if backend.is_array(v) else v)
                            for k, v in self.state[id(p)].items()}
        return {"param_groups": groups, "state": state}

    def load_state_dict(self, sd):
        if len(sd["param_groups"]) != len(self.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: {len(sd['param_groups'])} groups in the "
                             f"state, {len(self.param_groups)} in the optimizer")
        for g, saved in zip(self.param_groups, sd["param_groups"]):
            g.update(saved)
        params = self.params()
        self.state = {}
        for i, st in sd["state"].items():
            p = params[int(i)]
            self.state[id(p)] = {k: (backend.asarray(v, p.dtype, p.device).copy() if hasattr(v, "shape") and v.ndim else v)
                                 for k, v in st.items()}


class SGD(Optimizer):
    """p <- p - lr * v, with v = momentum * v + (g + weight_decay * p) (v = g + wd p at step 1)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def step(self):
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad + wd * p.data if wd else p.grad
                if mu:
                    st = self.state.setdefault(id(p), {})
                    if "momentum_buffer" not in st:
                        st["momentum_buffer"] = d.copy()
                    else:
                        st["momentum_buffer"] *= mu
                        st["momentum_buffer"] += d
                    d = st["momentum_buffer"]
                p.data -= lr * d


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's exact order:
        p <- p * (1 - lr * wd)
        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)"""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def step(self):
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                xp = backend.array_module(p.data)
                st = self.state.setdefault(id(p), {})
                if not st:
                    st.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
                st["step"] += 1
                t = st["step"]
                decay, step_size = 1 - lr * wd, lr / (1 - b1 ** t)
                inv_bc2 = 1 / math.sqrt(1 - b2 ** t)
                arrays = (p.data, g, st["exp_avg"], st["exp_avg_sq"])
                hyper = tuple(float(h) for h in (b1, b2, eps, decay, step_size, inv_bc2))
                if all(a.flags.c_contiguous for a in arrays) and kernels.compiled(*arrays):
                    adamw_update(*(a.reshape(-1) for a in arrays), *hyper)     # kernels/adamw.py
                else:
                    adamw_update_xp(xp, *arrays, *hyper)


def clip_grad_norm_(params, max_norm):
    """Scale all gradients together so their global L2 norm is at most max_norm (as
    torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6)). Returns the norm
    before clipping. `params`: tensors (a list or a generator) or one tensor; max_norm > 0
    (inf: only measure the norm; 0, which torch allows, would silently zero every gradient)."""
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real) or not max_norm > 0:
        raise ValueError(f"clip_grad_norm_: invalid max_norm={max_norm!r} (must be a number > 0; "
                         "inf only measures the norm)")
    params = [params] if isinstance(params, Tensor) else list(params)   # a generator is used up once
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = math.sqrt(sum(float((g.astype("float64") ** 2).sum()) for g in grads))
    if not math.isfinite(total):
        raise FloatingPointError(f"clip_grad_norm_: the gradient norm is {total} (non-finite gradients)")
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * p.grad.dtype.type(coef)
    return total
