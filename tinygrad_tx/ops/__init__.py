"""The primitive ops: one class per op, forward and backward adjacent."""
from .elementwise import Add, Sub, Mul, Div, Neg, Pow, RPow, Exp, Log, Sqrt, Tanh, Sigmoid, Relu, Erf
from .reduce import Sum, Max
from .matmul import MatMul
from .movement import Reshape, Permute, GetItem, Concat, Stack, ToDevice
from .select import MaskedFill, Where

ALL_OPS = (Add, Sub, Mul, Div, Neg, Pow, RPow, Exp, Log, Sqrt, Tanh, Sigmoid, Relu, Erf,
           Sum, Max, MatMul, Reshape, Permute, GetItem, Concat, Stack, MaskedFill, Where, ToDevice)
