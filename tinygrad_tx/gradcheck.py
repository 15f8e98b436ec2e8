"""Central-difference gradient checking in float64."""
import itertools

from . import backend
from .autograd import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    pass


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0):
    """Compare autograd with central differences for every input that requires grad.

    fn(*inputs) may return any shape: we check L = sum(fn(*inputs) * R) for a fixed random R,
    which tests the vector-Jacobian product backward computes. Numerically,
    dL/dx_i ~ (L(x_i + eps) - L(x_i - eps)) / (2 eps), error O(eps^2).
    Returns True, or raises GradcheckError naming the worst element.
    """
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if t.requires_grad and t.dtype != backend.dtype("float64"):
            raise TypeError(f"gradcheck: input {i} ({t.name or 'tensor'}{t.shape}) is {t.dtype}; "
                            "central differences need float64 inputs")
    out = fn(*inputs)
    xp = backend.array_module(out.data)
    R = xp.asarray(backend.rng_for_seed(seed).standard_normal(out.shape), dtype=out.dtype)

    def loss_value():
        with no_grad():
            return float((fn(*inputs).data * R).sum())

    for t in inputs:
        t.grad = None
    (out * Tensor(R)).sum().backward()
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            continue
        analytic = t.grad if t.grad is not None else xp.zeros_like(t.data)
        numeric = xp.zeros(t.shape, dtype=t.dtype)
        for idx in itertools.product(*(range(n) for n in t.shape)):
            orig = t.data[idx].item()
            t.data[idx] = orig + eps
            up = loss_value()
            t.data[idx] = orig - eps
            down = loss_value()
            t.data[idx] = orig
            numeric[idx] = (up - down) / (2 * eps)
        err = xp.abs(analytic - numeric)
        bad = err > atol + rtol * xp.abs(numeric)
        if bad.any():
            worst = tuple(int(k) for k in xp.unravel_index(int(xp.argmax(err - rtol * xp.abs(numeric))), t.shape)) if t.ndim else ()
            raise GradcheckError(f"gradcheck: input {i} ({t.name or 'tensor'}{t.shape}) at index {worst}: "
                                 f"analytic {float(analytic[worst]):.8g} vs numeric {float(numeric[worst]):.8g} "
                                 f"(abs err {float(err[worst]):.3g}, {int(bad.sum())} elements over tolerance)")
    return True
