"""Twin of shaders/chain_step.comp."""
import numpy as np


def chain_step(x: np.ndarray, *, stride: int = 7919, add: int = 1) -> np.ndarray:
    n = x.size
    idx = ((np.arange(n, dtype=np.uint64) * stride) & 0xFFFFFFFF) % n   # GLSL uint arithmetic wraps
    return (x[idx] + np.uint32(add)).astype(np.uint32)
