"""Twin of shaders/grad_weight.comp: the weight gradient of x·Wᵀ, in float64."""
import numpy as np

from ..errors import VkharpError


def grad_weight(dy, x, *, scale: float = 1.0) -> np.ndarray:
    """dw[r, c] = scale * sum_n dy[n, r] * x[n, c] for dy [N, R], x [N, C]: float64 [R, C].
    The launcher's accumulate=True is dw + this."""
    dy, x = np.asarray(dy, np.float64), np.asarray(x, np.float64)
    if dy.ndim != 2 or x.ndim != 2 or dy.shape[0] != x.shape[0]:
        raise VkharpError(f"grad_weight: dy {dy.shape} and x {x.shape} must be [N, R] and [N, C]")
    return scale * (dy.T @ x)
