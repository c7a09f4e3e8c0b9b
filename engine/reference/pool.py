"""Twin of shaders/pool_sum.comp."""
import numpy as np


def pool_sum(acc: np.ndarray, x: np.ndarray, pos: int, n_tokens: int) -> np.ndarray:
    """The new accumulator: x's first n_tokens rows summed (float32, in row order, as the shader),
    added to acc unless this chunk is at position 0."""
    s = np.zeros(x.shape[-1], np.float32) if pos == 0 else acc.astype(np.float32).copy()
    for r in range(min(n_tokens, x.shape[0])):
        s += x[r].astype(np.float32)
    return s
