"""Property test (hypothesis): every op on random shapes, including 0-d, size-0, size-1 and
broadcast ones, on int, bool and float (float32/float64) inputs, against torch: the value, the
dtype and every input's gradient agree, or both refuse (tests/torch_compare.py).

Derandomized with a fixed example budget per op family, so CI is deterministic and fast.
Not compared (documented deviations, docs/api.md): mixed dtypes in matmul (torch refuses,
we promote) and negative slice steps (numpy allows them, torch refuses)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
import torch.nn.functional as TF  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from tinygrad_tx import Tensor, concat, stack, where  # noqa: E402
from torch_compare import compare  # noqa: E402

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None)
FLOATS, INTS = ["float32", "float64"], ["int32", "int64"]
ALL = FLOATS + INTS + ["bool"]
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)


def make(shape, dtype, seed, kind="normal"):
    """Seeded data: normal floats (x2, with exact zeros sprinkled in), small ints, random bools.
    kind "positive" keeps floats and ints > 0 (for log/sqrt/fractional powers)."""
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if dtype in INTS:
        low = 1 if kind == "positive" else -3
        return np.asarray(rng.integers(low, 4, shape), dtype=dtype)
    x = rng.standard_normal(shape) * 2
    if kind == "positive":
        return np.asarray(np.abs(x) + 0.1, dtype=dtype)
    x = np.where(rng.random(shape) < 0.1, 0.0, x)          # exact zeros: singular points too
    return np.asarray(x, dtype=dtype)


seeds = st.integers(0, 2 ** 16)
fused = st.booleans()

UNARY = {
    "neg": (lambda a: -a, lambda a: -a, "normal"),
    "exp": (lambda a: a.exp(), torch.exp, "normal"),
    "log": (lambda a: a.log(), torch.log, "positive"),
    "sqrt": (lambda a: a.sqrt(), torch.sqrt, "positive"),
    "tanh": (lambda a: a.tanh(), torch.tanh, "normal"),
    "sigmoid": (lambda a: a.sigmoid(), torch.sigmoid, "normal"),
    "relu": (lambda a: a.relu(), torch.relu, "normal"),
    "erf": (lambda a: a.erf(), torch.erf, "normal"),
    "gelu": (lambda a: a.gelu(), TF.gelu, "normal"),
    "gelu_tanh": (lambda a: a.gelu("tanh"), lambda a: TF.gelu(a, approximate="tanh"), "normal"),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@SETTINGS
@given(shape=shapes, dtype=st.sampled_from(ALL), seed=seeds, fused=fused)
def test_unary(name, shape, dtype, seed, fused):
    ours, theirs, kind = UNARY[name]
    compare(ours, theirs, [make(shape, dtype, seed, kind)], fused=fused)


@SETTINGS
@given(shape=shapes, dtype=st.sampled_from(ALL), seed=seeds,
       exponent=st.sampled_from([0, 1, 2, 3, -1, -2, 0.5, -0.5, 2.5, 0.0, 1.5]))
def test_pow(shape, dtype, seed, exponent):
    kind = "positive" if isinstance(exponent, float) and exponent != int(exponent) else "normal"
    with np.errstate(all="ignore"):
        compare(lambda a: a ** exponent, lambda a: a ** exponent, [make(shape, dtype, seed, kind)])


@SETTINGS
@given(shape=shapes, dtype=st.sampled_from(FLOATS + INTS), seed=seeds,
       base=st.sampled_from([0, 0.0, 2, 2.0, 0.5, -2.0, -1, 1.0, 3]))
def test_scalar_base_pow(shape, dtype, seed, base):
    x = make(shape, dtype, seed)
    if dtype in INTS and isinstance(base, int):
        x = np.abs(x)                   # an int base to a negative int power: torch gives 0/garbage, we refuse
    with np.errstate(all="ignore"):
        compare(lambda a: base ** a, lambda a: base ** a, [x])


BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "div": lambda a, b: a / b}


@pytest.mark.parametrize("name", sorted(BINARY))
@SETTINGS
@given(shapes2=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0, max_side=3),
       da=st.sampled_from(ALL), db=st.sampled_from(ALL), seed=seeds)
def test_binary_broadcast(name, shapes2, da, db, seed):
    fn = BINARY[name]
    a, b = shapes2.input_shapes
    with np.errstate(all="ignore"):
        compare(fn, fn, [make(a, da, seed), make(b, db, seed + 1)])


@pytest.mark.parametrize("name", sorted(BINARY))
@SETTINGS
@given(shape=shapes, dtype=st.sampled_from(ALL), seed=seeds,
       scalar=st.sampled_from([2, -1, 0, 2.5, -0.5, True, False]), left=st.booleans())
def test_binary_with_a_python_scalar(name, shape, dtype, seed, scalar, left):
    fn = BINARY[name]
    op = (lambda a: fn(scalar, a)) if left else (lambda a: fn(a, scalar))
    with np.errstate(all="ignore"):
        compare(op, op, [make(shape, dtype, seed)])


@SETTINGS
@given(shapes2=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0, max_side=3),
       da=st.sampled_from(ALL), db=st.sampled_from(ALL), seed=seeds)
def test_binary_shape_mismatch_both_refuse(shapes2, da, db, seed):
    a, _ = shapes2.input_shapes
    if not a or a[-1] == 1:
        return                                   # a size-1 axis broadcasts with anything
    bad = a[:-1] + (4,)                          # 4 broadcasts with neither 0, 2 nor 3
    with np.errstate(all="ignore"):
        assert compare(lambda x, y: x * y, lambda x, y: x * y, [make(a, da, seed), make(bad, db, seed)]) == "refused"


axes = st.one_of(st.none(), st.integers(-4, 3), st.lists(st.integers(-4, 3), min_size=1, max_size=3).map(tuple))


def _torch_dim(x, axis):
    return tuple(range(x.ndim)) if axis is None else axis


REDUCE = {
    "sum": (lambda a, ax, kd: a.sum(axis=ax, keepdims=kd), lambda a, ax, kd: a.sum(dim=_torch_dim(a, ax), keepdim=kd)),
    "mean": (lambda a, ax, kd: a.mean(axis=ax, keepdims=kd), lambda a, ax, kd: a.mean(dim=_torch_dim(a, ax), keepdim=kd)),
    "max": (lambda a, ax, kd: a.max(axis=ax, keepdims=kd), lambda a, ax, kd: a.amax(dim=_torch_dim(a, ax), keepdim=kd)),
    "var": (lambda a, ax, kd: a.var(axis=ax, keepdims=kd),
            lambda a, ax, kd: a.var(dim=_torch_dim(a, ax), keepdim=kd, correction=0)),
}


@pytest.mark.filterwarnings("ignore:var... degrees of freedom")
@pytest.mark.parametrize("name", sorted(REDUCE))
@SETTINGS
@given(shape=shapes, dtype=st.sampled_from(ALL), seed=seeds, axis=axes,
       keepdims=st.booleans())
def test_reductions(name, shape, dtype, seed, axis, keepdims):
    ours, theirs = REDUCE[name]
    x = make(shape, dtype, seed)
    if name == "max" and dtype in FLOATS:
        x = np.where(np.random.default_rng(seed).random(shape) < 0.3, 1.0, x).astype(dtype)   # ties
    with np.errstate(all="ignore"):
        compare(lambda a: ours(a, axis, keepdims), lambda a: theirs(a, axis, keepdims), [x])


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@SETTINGS
@given(shape=shapes, dtype=st.sampled_from(ALL), seed=seeds, axis=st.integers(-4, 3), fused=fused)
def test_softmax_and_log_softmax(log, shape, dtype, seed, axis, fused):
    name = "log_softmax" if log else "softmax"
    compare(lambda a: getattr(a, name)(axis=axis), lambda a: getattr(a, name)(dim=axis),
            [make(shape, dtype, seed)], fused=fused)


@SETTINGS
@given(form=st.sampled_from(["vv", "mv", "vm", "mm", "bmm", "bm", "bb"]), n=st.integers(0, 3), k=st.integers(0, 3),
       m=st.integers(0, 3), b=st.integers(1, 2), dtype=st.sampled_from(FLOATS + INTS), seed=seeds,
       wrong_k=st.booleans())
def test_matmul(form, n, k, m, b, dtype, seed, wrong_k):
    k2 = k + 1 if wrong_k else k
    sa, sb = {"vv": ((k,), (k2,)), "mv": ((n, k), (k2,)), "vm": ((k,), (k2, m)), "mm": ((n, k), (k2, m)),
              "bmm": ((b, n, k), (b, k2, m)), "bm": ((b, n, k), (k2, m)), "bb": ((b, 1, n, k), (2, k2, m))}[form]
    compare(lambda x, y: x @ y, lambda x, y: x @ y, [make(sa, dtype, seed), make(sb, dtype, seed + 1)])


@st.composite
def reshapes(draw):
    shape = draw(shapes)
    size = int(np.prod(shape))
    kind = draw(st.sampled_from(["flat", "reverse", "ones", "bad"]))
    target = {"flat": (-1,), "reverse": tuple(reversed(shape)), "ones": (1,) + tuple(shape) + (1,),
              "bad": (size + 1,)}[kind]
    return shape, target


@SETTINGS
@given(st_=reshapes(), dtype=st.sampled_from(ALL), seed=seeds)
def test_reshape(st_, dtype, seed):
    shape, target = st_
    compare(lambda a: a.reshape(target), lambda a: a.reshape(target), [make(shape, dtype, seed)])


@SETTINGS
@given(shape=shapes, dtype=st.sampled_from(ALL), seed=seeds, data=st.data())
def test_transpose_and_swapaxes(shape, dtype, seed, data):
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    x = make(shape, dtype, seed)
    compare(lambda a: a.transpose(perm), lambda a: a.permute(perm), [x])
    i, j = data.draw(st.integers(-4, 3)), data.draw(st.integers(-4, 3))
    compare(lambda a: a.swapaxes(i, j), lambda a: a.transpose(i, j), [x])


@st.composite
def basic_index(draw, shape):
    """ints (in or out of range), slices with positive steps, None and Ellipsis."""
    parts = []
    for n in shape[:draw(st.integers(0, len(shape)))]:
        kind = draw(st.sampled_from(["int", "slice", "none"]))
        if kind == "int":
            parts.append(draw(st.integers(-n - 1, n)))
        elif kind == "slice":
            parts.append(slice(draw(st.none() | st.integers(-4, 4)), draw(st.none() | st.integers(-4, 4)),
                               draw(st.none() | st.integers(1, 3))))
        else:
            parts.append(None)
    if draw(st.booleans()):
        parts.append(Ellipsis)
    return tuple(parts)


@SETTINGS
@given(shape=shapes, dtype=st.sampled_from(ALL), seed=seeds, data=st.data())
def test_getitem_basic(shape, dtype, seed, data):
    index = data.draw(basic_index(shape))
    compare(lambda a: a[index], lambda a: a[index], [make(shape, dtype, seed)])


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3), dtype=st.sampled_from(ALL),
       seed=seeds, data=st.data())
def test_getitem_advanced(shape, dtype, seed, data):
    """An int array (repeats add their gradients) or a boolean mask along the first axis."""
    n = shape[0]
    if data.draw(st.booleans()) and n:
        idx = np.asarray(data.draw(st.lists(st.integers(-n, n - 1), max_size=4)), dtype=np.int64)
        tidx = torch.from_numpy(idx)
    else:
        idx = np.asarray(np.random.default_rng(seed).random(n) < 0.5)
        tidx = torch.from_numpy(idx)
    compare(lambda a: a[idx], lambda a: a[tidx], [make(shape, dtype, seed)])


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3), dtypes=st.lists(st.sampled_from(ALL),
       min_size=1, max_size=3), seed=seeds, data=st.data())
def test_concat(shape, dtypes, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    arrays = []
    for i, dt in enumerate(dtypes):
        s = list(shape)
        s[axis] = data.draw(st.integers(0, 3))
        arrays.append(make(tuple(s), dt, seed + i))
    compare(lambda *xs: concat(list(xs), axis=axis), lambda *xs: torch.cat(list(xs), dim=axis), arrays)


@SETTINGS
@given(shape=shapes, dtypes=st.lists(st.sampled_from(ALL), min_size=1, max_size=3), seed=seeds,
       axis=st.integers(-5, 4))
def test_stack(shape, dtypes, seed, axis):
    arrays = [make(shape, dt, seed + i) for i, dt in enumerate(dtypes)]
    compare(lambda *xs: stack(list(xs), axis=axis), lambda *xs: torch.stack(list(xs), dim=axis), arrays)


@SETTINGS
@given(shapes3=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, min_side=0, max_side=3),
       da=st.sampled_from(ALL), db=st.sampled_from(ALL), seed=seeds, scalar=st.sampled_from([None, 0.5, 2, True]))
def test_where(shapes3, da, db, seed, scalar):
    sc, sa, sb = shapes3.input_shapes
    cond = np.asarray(np.random.default_rng(seed).random(sc) < 0.5)
    tcond = torch.from_numpy(cond)
    if scalar is None:
        compare(lambda a, b: where(cond, a, b), lambda a, b: torch.where(tcond, a, b),
                [make(sa, da, seed), make(sb, db, seed + 1)])
    else:
        compare(lambda a: where(cond, a, scalar), lambda a: torch.where(tcond, a, scalar), [make(sa, da, seed)])


@SETTINGS
@given(x_shape=shapes, dtype=st.sampled_from(ALL), seed=seeds, data=st.data(),
       value=st.sampled_from([0.0, -1.5, 2, float("-inf"), True]))
def test_masked_fill(x_shape, dtype, seed, data, value):
    m_shape = data.draw(hnp.broadcastable_shapes(x_shape, min_dims=0, max_dims=len(x_shape), min_side=0))
    mask = np.asarray(np.random.default_rng(seed).random(m_shape) < 0.5)
    compare(lambda a: a.masked_fill(mask, value), lambda a: a.masked_fill(torch.from_numpy(mask), value),
            [make(x_shape, dtype, seed)])


# ----------------------------------------------------------------------------- functional, both paths
lead_shapes = hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3)


@SETTINGS
@given(lead=lead_shapes, n_in=st.integers(0, 3), n_out=st.integers(0, 3), bias=st.booleans(),
       dtype=st.sampled_from(FLOATS), seed=seeds, fused=fused, wrong=st.booleans())
def test_linear(lead, n_in, n_out, bias, dtype, seed, fused, wrong):
    from tinygrad_tx import functional as F
    arrays = [make(lead + (n_in + wrong,), dtype, seed), make((n_in, n_out), dtype, seed + 1)]
    if bias:
        arrays.append(make((n_out,), dtype, seed + 2))
    compare(lambda x, w, *b: F.linear(x, w, *b), lambda x, w, *b: TF.linear(x, w.T, *b), arrays, fused=fused)


@SETTINGS
@given(lead=lead_shapes, C=st.integers(1, 4), affine=st.booleans(), dtype=st.sampled_from(FLOATS), seed=seeds,
       fused=fused, wrong=st.booleans())
def test_layer_norm(lead, C, affine, dtype, seed, fused, wrong):
    from tinygrad_tx import functional as F
    arrays = [make(lead + (C,), dtype, seed)]
    if affine:
        arrays += [make((C + wrong,), dtype, seed + 1), make((C,), dtype, seed + 2)]
    compare(lambda x, *wb: F.layer_norm(x, *wb), lambda x, *wb: TF.layer_norm(x, (C,), *wb), arrays, fused=fused)


@SETTINGS
@given(lead=hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=3), V=st.integers(1, 4),
       dtype=st.sampled_from(FLOATS), seed=seeds, fused=fused, ignore=st.booleans(), nan_in_ignored=st.booleans(),
       out_of_range=st.booleans())
def test_cross_entropy(lead, V, dtype, seed, fused, ignore, nan_in_ignored, out_of_range):
    """Ignored rows (target -100) add nothing, even when their logits are NaN; an out-of-range
    target is refused by both. (All rows ignored: torch gives NaN, we refuse; not drawn here.)"""
    from tinygrad_tx import functional as F
    rng = np.random.default_rng(seed)
    logits = make(lead + (V,), dtype, seed)
    t = rng.integers(0, V, lead)
    if ignore:
        dropped = rng.random(lead) < 0.4
        dropped.flat[0] = False                         # at least one row counts
        t = np.where(dropped, -100, t)
        if nan_in_ignored:
            logits[dropped] = np.nan
    if out_of_range:
        t.flat[0] = V
    compare(lambda z: F.cross_entropy(z, t, ignore_index=-100),
            lambda z: TF.cross_entropy(z.reshape(-1, V), torch.from_numpy(t).reshape(-1), ignore_index=-100),
            [logits], fused=fused)


@SETTINGS
@given(ids_shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3), V=st.integers(1, 4),
       C=st.integers(0, 3), dtype=st.sampled_from(FLOATS), seed=seeds, fused=fused, out_of_range=st.booleans())
def test_embedding(ids_shape, V, C, dtype, seed, fused, out_of_range):
    from tinygrad_tx import functional as F
    ids = np.asarray(np.random.default_rng(seed).integers(0, V, ids_shape))      # repeats: gradients add
    if out_of_range and ids.size:
        ids.flat[0] = V
    compare(lambda w: F.embedding(w, ids), lambda w: TF.embedding(torch.from_numpy(ids), w),
            [make((V, C), dtype, seed)], fused=fused)


@SETTINGS
@given(B=st.integers(0, 2), Tq=st.integers(0, 3), Tk=st.integers(1, 3), hs=st.integers(1, 3), hv=st.integers(0, 3),
       dtype=st.sampled_from(FLOATS), seed=seeds, fused=fused, masked=st.booleans())
def test_attention(B, Tq, Tk, hs, hv, dtype, seed, fused, masked):
    """softmax(q k^T / sqrt(hs)) v against torch's scaled_dot_product_attention (its boolean
    mask means "allowed", ours "blocked"). Every query keeps one key: torch gives NaN for a
    fully blocked row, we give 0 (docs/api.md)."""
    from transformer.attention import scaled_dot_product_attention
    mask = None
    if masked:
        mask = np.random.default_rng(seed).random((B, Tq, Tk)) < 0.5
        mask[..., 0] = False
    tmask = None if mask is None else torch.from_numpy(~mask)
    compare(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=mask)[0],
            lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, attn_mask=tmask),
            [make((B, Tq, hs), dtype, seed), make((B, Tk, hs), dtype, seed + 1), make((B, Tk, hv), dtype, seed + 2)],
            fused=fused)


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4), dtype=st.sampled_from(ALL), seed=seeds,
       data=st.data())
def test_split(shape, dtype, seed, data):
    """An int chunk size or a list of sizes (negative ones refused by both); each piece is
    compared, and the gradient flows back through all of them."""
    axis = data.draw(st.integers(-4, 3))
    n = shape[axis] if -len(shape) <= axis < len(shape) else 0
    if data.draw(st.booleans()):
        sizes = data.draw(st.integers(1, 4))
    else:
        sizes = data.draw(st.lists(st.integers(-1, 4), max_size=3))
        if data.draw(st.booleans()) and sizes:
            sizes[-1] = n - sum(sizes[:-1])                 # usually sums right; may go negative
    x = make(shape, dtype, seed)
    # the pieces' shapes, then their values (flattened and joined) and gradients
    compare(lambda a: Tensor(np.array([p.shape for p in a.split(sizes, axis=axis)], dtype=np.int64).reshape(-1)),
            lambda a: torch.tensor([tuple(p.shape) for p in a.split(sizes, dim=axis)], dtype=torch.int64).reshape(-1),
            [x], grad=False)
    compare(lambda a: concat([p.reshape(-1) for p in a.split(sizes, axis=axis)]),
            lambda a: torch.cat([p.reshape(-1) for p in a.split(sizes, dim=axis)]), [x])


@SETTINGS
@given(shape=shapes, dtype=st.sampled_from(FLOATS + INTS), seed=seeds, axis=st.integers(-4, 3))
def test_argmax(shape, dtype, seed, axis):
    x = make(shape, dtype, seed)
    compare(lambda a: a.argmax(axis=axis), lambda a: a.argmax(dim=axis), [x], grad=False)
