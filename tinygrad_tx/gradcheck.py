"""Central-difference gradient checking in float64."""
import itertools

from . import backend
from .autograd import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    pass


def numeric_and_analytic(fn, inputs, eps=1e-6, seed=0):
    """For each input that requires grad: (index, analytic gradient, numeric gradient).

    fn(*inputs) may return any shape: we differentiate L = sum(fn(*inputs) * R) for a fixed
    random R, which tests the vector-Jacobian product that backward computes. Numerically,
    dL/dx_i ~ (L(x_i + eps) - L(x_i - eps)) / (2 eps), with error O(eps^2)."""
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
    results = []
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
        results.append((i, analytic, numeric))
    return results


def max_gradient_error(fn, inputs, eps=1e-6, seed=0):
    """The largest |analytic - numeric| over all elements of all inputs."""
    errs = [float(abs(a - n).max()) if a.size else 0.0 for _, a, n in numeric_and_analytic(fn, inputs, eps, seed)]
    return max(errs, default=0.0)


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0):
    """Compare autograd with central differences (float64) for every input that requires grad.
    Returns True, or raises GradcheckError naming the worst element."""
    for i, analytic, numeric in numeric_and_analytic(fn, inputs, eps, seed):
        t = inputs[i]
        xp = backend.array_module(numeric)
        err = xp.abs(analytic - numeric)
        bad = ~(err <= atol + rtol * xp.abs(numeric))      # a NaN on either side is a failure
        if bad.any():
            flat = int(xp.argmax(xp.where(bad, err - rtol * xp.abs(numeric), -xp.inf)))
            worst = tuple(int(k) for k in xp.unravel_index(flat, t.shape)) if t.ndim else ()
            raise GradcheckError(f"gradcheck: input {i} ({t.name or 'tensor'}{t.shape}) at index {worst}: "
                                 f"analytic {float(analytic[worst]):.8g} vs numeric {float(numeric[worst]):.8g} "
                                 f"(abs err {float(err[worst]):.3g}; {int(bad.sum())} elements over tolerance)")
    return True
