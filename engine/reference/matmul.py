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


def matmul_split(weight: quant.Packed, x, sizes, bias=None) -> list[np.ndarray]:
    """The product of a row-stacked matrix ([Wq; Wk; Wv]) split back into its parts' outputs:
    [out[:, :s0], out[:, s0:s0+s1], ...] for sizes (s0, s1, ...), float64 [N, s] each."""
    out = matmul(weight, x, bias)
    edges = np.cumsum([0, *sizes])
    if edges[-1] != weight.rows:
        raise VkharpError(f"matmul_split: sizes {list(sizes)} do not add up to {weight.rows} rows")
    return [out[:, a:b] for a, b in zip(edges[:-1], edges[1:])]


def matmul_glu(weight: quant.Packed, x, act: str = "silu") -> np.ndarray:
    """act(x·Wgᵀ) * (x·Wuᵀ) for W = [Wg; Wu] stacked by rows (2F rows): float64 [N, F]."""
    from .activation import gelu_f64, silu_f64
    if weight.rows % 2:
        raise VkharpError(f"matmul_glu: a [gate; up] matrix has an even number of rows, not {weight.rows}")
    g, u = matmul_split(weight, x, (weight.rows // 2, weight.rows // 2))
    if act == "silu":
        return silu_f64(g) * u
    if act == "gelu_tanh":
        return gelu_f64(g, "tanh") * u
    raise VkharpError(f"matmul_glu: act must be 'silu' or 'gelu_tanh', got {act!r}")
