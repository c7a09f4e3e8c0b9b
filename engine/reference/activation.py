"""Twins of shaders/activation.comp, in float64.

Both GELUs are written in forms that keep float64's relative accuracy in the negative tail (the
textbook 0.5 x (1 + tanh u) loses it to cancellation once tanh u is near -1):
tanh GELU as x * sigmoid(2u), exact GELU as x * 0.5 * erfc(-x / sqrt(2)).
"""
import math

import numpy as np

from ..errors import VkharpError

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _x_sigmoid(x, z):
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-z))


def silu_f64(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return _x_sigmoid(x, x)


def gelu_f64(x, approximate: str = "tanh") -> np.ndarray:
    x = np.asarray(x, np.float64)
    if approximate == "tanh":
        return _x_sigmoid(x, 2.0 * _SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
    if approximate == "none":
        return x * 0.5 * _erfc(-x / math.sqrt(2.0))
    raise VkharpError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")


def swiglu(gate, up) -> np.ndarray:
    return (silu_f64(gate) * np.asarray(up, np.float64)).astype(np.float32)


def geglu(gate, up, *, approximate: str = "tanh") -> np.ndarray:
    return (gelu_f64(gate, approximate) * np.asarray(up, np.float64)).astype(np.float32)


def silu(x) -> np.ndarray:
    return silu_f64(x).astype(np.float32)


def gelu(x, *, approximate: str = "tanh") -> np.ndarray:
    return gelu_f64(x, approximate).astype(np.float32)
