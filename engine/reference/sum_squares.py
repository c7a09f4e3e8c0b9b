"""Twin of shaders/sum_squares.comp: the same chunks' sums of squares, in float64."""
import numpy as np


def sum_squares(x, *, groups: int) -> np.ndarray:
    """float64 [groups]: the sum of x² over chunk g = [g*c, (g+1)*c), c = ceil(n / groups)."""
    x = np.asarray(x, np.float64).reshape(-1)
    c = -(-x.size // groups)
    return np.array([np.sum(x[g * c:(g + 1) * c] ** 2) for g in range(groups)])
