"""Twin of shaders/activation_back.comp: the backward of the gated MLP activation, float64 inside."""
import math

import numpy as np

from ..errors import VkharpError
from .activation import gelu_f64, silu_f64

GLU_ACTS = ("silu", "gelu_tanh")
_K1 = 2.0 * math.sqrt(2.0 / math.pi)
_K3 = _K1 * 0.044715


def _sigmoid(z):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def act_grad(x, act: str) -> np.ndarray:
    """d act(x) / dx in float64."""
    x = np.asarray(x, np.float64)
    if act == "silu":
        s = _sigmoid(x)
        return s * (1.0 + x * (1.0 - s))
    if act == "gelu_tanh":
        z = x * (_K1 + _K3 * x * x)
        s = _sigmoid(z)
        return s + x * s * _sigmoid(-z) * (_K1 + 3.0 * _K3 * x * x)
    raise VkharpError(f"glu_back: act must be one of {GLU_ACTS}, got {act!r}")


def glu_back(gate, up, dmlp, *, act: str = "silu"):
    """(dgate, dup) of mlp = act(gate) * up."""
    g, u, d = (np.asarray(a, np.float64) for a in (gate, up, dmlp))
    a = silu_f64(g) if act == "silu" else gelu_f64(g, "tanh")
    return (d * u * act_grad(g, act)).astype(np.float32), (d * a).astype(np.float32)
