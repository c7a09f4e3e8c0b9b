"""Twin of shaders/matmul_t.comp: dy·W on the same decoded weights as the shader, in float64."""
import numpy as np

from .. import quant
from ..errors import VkharpError


def matmul_t(weight: quant.Packed, dy, *, rows: tuple[int, int] | None = None) -> np.ndarray:
    """dx[n, c] = sum_r dy[n, r] * W[row0 + r, c] for rows=(row0, count) (default all): float64 [N, cols].
    The launcher's accumulate=True is dx + this."""
    row0, count = (0, weight.rows) if rows is None else rows
    if count < 1 or row0 < 0 or row0 + count > weight.rows:
        raise VkharpError(f"matmul_t: rows ({row0}, {count}) is not a range of the weight's {weight.rows} rows")
    dy = np.asarray(dy, dtype=np.float64)
    if dy.size % count:
        raise VkharpError(f"matmul_t: dy has {dy.size} values, not a multiple of {count} rows")
    w = quant.dequantize(weight.rows_slice(row0, row0 + count)).astype(np.float64)
    return dy.reshape(-1, count) @ w
