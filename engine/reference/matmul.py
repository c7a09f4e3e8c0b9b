"""Twins of shaders/matvec.comp and shaders/matmul.comp: the same decoded weights, in float64."""
import numpy as np

from .. import quant
from ..errors import VkharpError


def _decoded(weight: quant.Packed) -> np.ndarray:
    return quant.dequantize(weight).astype(np.float64)


def matvec(weight: quant.Packed, x, bias=None) -> np.ndarray:
    """out[r] = sum_c W[r, c] * x[c] (+ bias[r]), float64 [rows]."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size != weight.cols:
        raise VkharpError(f"matvec: x has {x.size} values, the weight has {weight.cols} columns")
    out = _decoded(weight) @ x
    return out + np.asarray(bias, dtype=np.float64).reshape(-1) if bias is not None else out


def matmul(weight: quant.Packed, x, bias=None) -> np.ndarray:
    """out[n, r] = sum_c x[n, c] * W[r, c] (+ bias[r]), float64 [N, rows]."""
    x = np.asarray(x, dtype=np.float64)
    if x.size % weight.cols:
        raise VkharpError(f"matmul: x has {x.size} values, not a multiple of the weight's {weight.cols} columns")
    out = x.reshape(-1, weight.cols) @ _decoded(weight).T
    return out + np.asarray(bias, dtype=np.float64).reshape(1, -1) if bias is not None else out
