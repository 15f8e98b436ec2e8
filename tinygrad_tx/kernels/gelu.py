"""GELU, exact and tanh, forward and backward (fused.Gelu). Flat arrays: every element is its
own row, so prange shares the elements among the threads."""
import math

from . import prange, rows_kernel

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
INV_SQRT_2 = 1 / math.sqrt(2)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
GELU_C = 0.044715


@rows_kernel
def gelu_forward(x, gauss, y, cdf, pdf, poly_erf):
    """y = x * Phi(x), Phi(x) = (1 + erf(x / sqrt2)) / 2; keeps Phi(x) and phi(x) for backward.
    gauss = exp(-x^2/2), computed by the caller with numpy's vectorised exp: numba's exp is a
    scalar libm call here (no SVML), which made it 80% of this kernel's time. gauss may be
    pdf itself (each element is read before phi(x) is written over it).
    poly_erf (float32 storage): Phi by Abramowitz & Stegun 7.1.26, |error| < 1e-7 (below
    float32's resolution of Phi), which reuses gauss instead of calling libm's erf (float64
    keeps math.erf: the composed op's precision)."""
    for i in prange(x.shape[0]):
        xi = x[i]
        if poly_erf:
            # Phi(-|x|) = erfc(|x|/sqrt2) / 2 = (a1 t + ... + a5 t^5) exp(-x^2/2) / 2, t = 1/(1 + p |x|/sqrt2)
            t = 1.0 / (1.0 + 0.3275911 * INV_SQRT_2 * abs(xi))
            tail = 0.5 * gauss[i] * t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
                                         + t * (-1.453152027 + t * 1.061405429))))
            phi_cdf = tail if xi < 0 else 1.0 - tail
        else:
            phi_cdf = 0.5 * (1.0 + math.erf(xi * INV_SQRT_2))
        cdf[i] = phi_cdf
        pdf[i] = gauss[i] * INV_SQRT_2PI                  # phi(x)
        y[i] = xi * phi_cdf


@rows_kernel
def gelu_backward(x, cdf, pdf, g, dx):
    """dy/dx = Phi(x) + x phi(x)   (product rule on x * Phi(x); Phi' = phi)"""
    for i in prange(x.shape[0]):
        dx[i] = g[i] * (cdf[i] + x[i] * pdf[i])


@rows_kernel
def gelu_tanh_forward(x, th, y):
    """y = x (1 + t) / 2,  t = tanh(u), u = sqrt(2/pi) (x + 0.044715 x^3): t computed by the
    caller with numpy's vectorised tanh (tanh_u_xp; numba's is a scalar libm call here)."""
    for i in prange(x.shape[0]):
        y[i] = 0.5 * x[i] * (1.0 + th[i])


@rows_kernel
def gelu_tanh_backward(x, th, g, dx):
    """dy/dx = (1 + t) / 2            through the x in front
             + x (1 - t^2) du/dx / 2  through tanh,  du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)"""
    for i in prange(x.shape[0]):
        xi, t = x[i], th[i]
        du_dx = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * xi * xi)
        dx[i] = g[i] * (0.5 * (1.0 + t) + 0.5 * xi * (1.0 - t * t) * du_dx)


# ----------------------------------------------------------------------------- xp reference
def gauss_xp(xp, x):
    """exp(-x^2/2), the input gelu_forward takes."""
    g = x * x
    g *= x.dtype.type(-0.5)
    return xp.exp(g, out=g)


def gelu_forward_xp(xp, erf, x):
    """(y, Phi(x), phi(x)) as whole-array passes; `erf` from the backend (numpy has none)."""
    cdf = 0.5 * (1 + erf(x * x.dtype.type(INV_SQRT_2)))
    pdf = gauss_xp(xp, x) * x.dtype.type(INV_SQRT_2PI)
    return x * cdf, cdf, pdf


def gelu_backward_xp(xp, x, cdf, pdf, g):
    return g * (cdf + x * pdf)


def tanh_u_xp(xp, x):
    """t = tanh(sqrt(2/pi) (x + 0.044715 x^3)), the input gelu_tanh_forward takes."""
    dt = x.dtype.type
    t = x * x
    t *= dt(GELU_C)
    t += dt(1)
    t *= x
    t *= dt(SQRT_2_OVER_PI)
    return xp.tanh(t, out=t)


def gelu_tanh_forward_xp(xp, x):
    t = tanh_u_xp(xp, x)
    return x.dtype.type(0.5) * x * (1 + t), t


def gelu_tanh_backward_xp(xp, x, t, g):
    dt = x.dtype.type
    du_dx = dt(SQRT_2_OVER_PI) * (1 + dt(3 * GELU_C) * x * x)
    return g * (dt(0.5) * (1 + t) + dt(0.5) * x * (1 - t * t) * du_dx)
