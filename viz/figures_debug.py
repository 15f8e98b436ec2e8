"""The figure of docs/backprop.md's "Check your own derivation": a custom op with a wrong
backward, found by viz.compare_backward. Registered in viz.figures.FIGURES."""
import pathlib

import numpy as np

from tinygrad_tx import Tensor
from tinygrad_tx.autograd import Function

from .compare import compare_backward
from .render import render


class Cube(Function):
    """y = x^3;  dL/dx = dL/dy * 3 x^2  (the backward below forgets the 3, on purpose)"""
    def forward(self, x):
        self.save_for_backward(x)
        return x * x * x

    def backward(self, g):
        (x,) = self.saved
        return g * x * x                        # wrong: should be g * 3 * x * x


def planted_bug_loss(seed=0):
    """loss = sum(sigmoid(cube(tanh(x W))) * tanh(x W)), with Cube's backward wrong. float64."""
    rng = np.random.default_rng(seed)
    x = Tensor(rng.normal(size=(3, 4)), requires_grad=True, name="x")          # (3, 4)
    W = Tensor(rng.normal(size=(4, 2)), requires_grad=True, name="W")          # (4, 2)
    t = (x @ W).named("h").tanh().named("t")                                   # (3, 2)
    s = Cube.apply(t).named("cube").sigmoid().named("s")
    return (s * t).sum().named("loss")


def compare_bug_svg(out_dir, seed):
    cmp = compare_backward(planted_bug_loss(seed), "numeric")
    return render(cmp.draw(), pathlib.Path(out_dir) / "compare-bug.svg")


__all__ = ["Cube", "planted_bug_loss", "compare_bug_svg"]
