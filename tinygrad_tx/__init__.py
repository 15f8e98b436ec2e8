"""tinygrad_tx: a small, readable reverse-mode autograd tensor engine on numpy (CuPy for GPU)."""
from .autograd import AnomalyError, detect_anomaly, fused_ops, is_fused, is_grad_enabled, no_grad, scope
from .backend import default_device, manual_seed, set_default_device, set_default_dtype
from .tensor import Tensor, concat, stack, where
from .gradcheck import GradcheckError, gradcheck
from . import functional, nn, optim, threads

__version__ = "0.1.0"

__all__ = ["Tensor", "no_grad", "gradcheck", "detect_anomaly", "concat", "stack", "where",
           "scope", "manual_seed", "set_default_dtype", "set_default_device", "default_device", "is_grad_enabled", "AnomalyError",
           "GradcheckError", "fused_ops", "is_fused", "functional", "nn", "optim", "threads", "__version__"]
