"""Modules: containers of parameters with a forward. Parameters are found by walking the
attributes (a Tensor with requires_grad is a parameter, a Module a child), so a model is just
a class that assigns its layers in __init__. Calling a module tags every tensor it creates
with its dotted name (e.g. "h.0.attn") for the viz layer to group by, and every parameter is
named by its key in the top module's named_parameters() ("h.0.attn.c_attn.weight")."""
import math
import numbers
import weakref

from . import backend
from .autograd import scope
from .functional import dropout, embedding, layer_norm, linear
from .tensor import Tensor


def Parameter(data, name=None):
    """A trainable leaf tensor."""
    return Tensor(data, requires_grad=True, name=name)


class Module:
    training = True
    _name = ""
    _parent = None          # weak reference to the module this one was last attached to

    def __setattr__(self, key, value):
        if isinstance(value, Module):
            # a ModuleList is never called itself, so its items carry its name: "h.0"
            prefix = self._name if _is_plain_list(self) else ""
            _set_scope_name(value, f"{prefix}.{key}" if prefix else key)
            object.__setattr__(value, "_parent", weakref.ref(self))
        object.__setattr__(self, key, value)
        if isinstance(value, Module) or _is_parameter(value):
            _name_parameters(self)

    def __call__(self, *args, **kwargs):
        with scope(self._name):
            return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def children(self):
        """(name, module) for the direct submodules, in assignment order."""
        for key, value in vars(self).items():
            if isinstance(value, Module):
                yield key, value

    def named_parameters(self, prefix=""):
        """(dotted name, parameter), each shared tensor once (under its first name)."""
        seen = set()
        stack = [(prefix, self)]
        out = []
        while stack:
            pre, mod = stack.pop()
            kids = []
            for key, value in vars(mod).items():
                if _is_parameter(value) and id(value) not in seen:
                    seen.add(id(value))
                    out.append((pre + key, value))
                elif isinstance(value, Module):
                    kids.append((pre + key + ".", value))
            stack.extend(reversed(kids))
        return out

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module ("" ) and every descendant, depth first."""
        yield prefix.rstrip("."), self
        for key, child in self.children():
            yield from child.named_modules(prefix + key + ".")

    def modules(self):
        return (m for _, m in self.named_modules())

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device=None, dtype=None):
        """Move every parameter and buffer (tensor attribute) to "cpu" or "gpu" and/or convert
        the float ones to `dtype` ("float32", "float64"), in place, so an optimizer built on the
        parameters keeps working (build it after a dtype change: its state keeps the old dtype).
        Integer buffers keep their dtype, as in torch. Returns self."""
        dt = None if dtype is None else backend.dtype(dtype)
        if dt is not None and dt.kind != "f":
            raise TypeError(f"Module.to: dtype must be a float dtype, got {dt}")
        for m in self.modules():
            for value in vars(m).values():
                if isinstance(value, Tensor):
                    value.data = _moved(value.data, device, dt)
                    if value.grad is not None:
                        value.grad = _moved(value.grad, device, dt)
        return self

    def double(self):
        """Every float parameter and buffer to float64 (torch's model.double())."""
        return self.to(dtype="float64")

    def float(self):
        """Every float parameter and buffer to float32 (torch's model.float())."""
        return self.to(dtype="float32")

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    def state_dict(self):
        """name -> host numpy array copy of each parameter."""
        return {name: backend.to_numpy(p.data).copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters in place (optimizers keep their references).
        strict: every parameter must be given and no unknown name may appear. Every entry is
        checked (name, type, shape) before anything is copied: on an error nothing changes."""
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        staged = []
        for name, arr in state.items():
            if name not in params:
                continue
            p = params[name]
            if isinstance(arr, Tensor):
                arr = arr.data
            if not backend.is_array(arr) or arr.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: {name} must be a numeric array, got "
                                f"{type(arr).__name__}" + (f" of dtype {arr.dtype}" if hasattr(arr, "dtype") else ""))
            if tuple(arr.shape) != p.shape:
                raise ValueError(f"load_state_dict: {name} has shape {tuple(arr.shape)} in the state "
                                 f"but {p.shape} in the model")
            staged.append((p, backend.asarray(arr, p.dtype, backend.device_of(p.data))))
        for p, arr in staged:                      # all checked: now copy
            p.data[...] = arr
        return missing, unexpected

    def __repr__(self):
        kids = "".join(f"\n  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in self.children())
        return f"{type(self).__name__}({self.extra_repr()}{kids}{chr(10) if kids else ''})"

    def extra_repr(self):
        return ""


def _moved(arr, device, dtype):
    """arr on `device` (None: where it is), float arrays converted to `dtype` (None: unchanged)."""
    if device is not None:
        arr = backend.to_device(arr, device)
    return backend.asarray(arr, dtype) if dtype is not None and backend.is_float(arr) else arr


def _is_parameter(value):
    """Parameters are trainable LEAVES; an intermediate kept for inspection is not one."""
    return isinstance(value, Tensor) and value.requires_grad and value.op is None


def _name_parameters(module):
    """Name every parameter of the tree `module` belongs to by its key in the top module's
    named_parameters(). Runs at each attach, so the last attach (the top) has the final word."""
    top = module
    while top._parent is not None and top._parent() is not None:
        top = top._parent()
    for name, p in top.named_parameters():
        p.name = name


def _is_plain_list(module):
    return isinstance(module, ModuleList) and not isinstance(module, Sequential)


def _set_scope_name(module, name):
    """The scope a module's tensors are tagged with; a plain ModuleList passes it to its items."""
    object.__setattr__(module, "_name", name)
    if _is_plain_list(module):
        for key, child in module.children():
            _set_scope_name(child, f"{name}.{key}")


def _uniform(shape, bound):
    return backend.asarray(backend.rng().uniform(-bound, bound, shape), backend.default_dtype())


def _check_size(module, **sizes):
    """Layer sizes are ints >= 0 (0 gives an empty layer, as torch allows)."""
    for key, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"{module}: {key} must be an int >= 0, got {n!r}")


class Linear(Module):
    """y = x @ W + b with W (in_features, out_features): (.., in) -> (.., out).
    Init as PyTorch: W, b ~ U(-1/sqrt(in), 1/sqrt(in))."""

    def __init__(self, in_features, out_features, bias=True):
        _check_size("Linear", in_features=in_features, out_features=out_features)
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features) if in_features else 0.0   # in 0: an empty W, torch too
        self.weight = Parameter(_uniform((in_features, out_features), bound))
        self.bias = Parameter(_uniform((out_features,), bound)) if bias else None

    def forward(self, x):
        return linear(x, self.weight, self.bias)                 # (.., out)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: ids (..) -> rows of weight (.., dim). Init N(0, 1) as PyTorch."""

    def __init__(self, num_embeddings, embedding_dim):
        _check_size("Embedding", num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        w = backend.rng().standard_normal((num_embeddings, embedding_dim))
        self.weight = Parameter(backend.asarray(w, backend.default_dtype()))

    def forward(self, ids):
        return embedding(self.weight, ids)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Per-token normalisation over the last axis, then weight (ones) and bias (zeros)."""

    def __init__(self, dim, eps=1e-5, bias=True):
        _check_size("LayerNorm", dim=dim)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
            raise ValueError(f"LayerNorm: eps must be a number >= 0, got {eps!r}")
        self.dim, self.eps = dim, eps
        dt = backend.default_dtype()
        self.weight = Parameter(backend.asarray([1.0] * dim, dt))
        self.bias = Parameter(backend.asarray([0.0] * dim, dt)) if bias else None

    def forward(self, x):
        return layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}"


class Dropout(Module):
    def __init__(self, p=0.5):
        self.p = p

    def forward(self, x):
        return dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class ModuleList(Module):
    """A list of modules, registered under "0", "1", ..."""

    def __init__(self, modules=()):
        for m in modules:
            self.append(m)

    def append(self, module):
        setattr(self, str(len(self)), module)
        return self

    def __len__(self):
        return sum(1 for _ in self.children())

    def __iter__(self):
        return (m for _, m in self.children())

    def __getitem__(self, i):
        return list(self)[i]


class Sequential(ModuleList):
    """Modules applied in order: y = m_n(...m_2(m_1(x)))."""

    def __init__(self, *modules):
        super().__init__(modules)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x
