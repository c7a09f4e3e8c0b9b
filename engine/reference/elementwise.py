"""Twins of the simple element-wise shaders (float64 inside, float32 out)."""
import numpy as np

from .. import rng
from ..params import STEP_FIELDS


def fill_u32(n: int, *, value: int = 0) -> np.ndarray:
    return np.full(n, value, dtype=np.uint32)


def add(a, b) -> np.ndarray:
    return (np.asarray(a, np.float64) + np.asarray(b, np.float64)).astype(np.float32)


def scale(x, *, s: float) -> np.ndarray:
    return (np.asarray(x, np.float64) * s).astype(np.float32)


def mix(a, b, *, beta: float) -> np.ndarray:
    return (beta * np.asarray(a, np.float64) + (1.0 - beta) * np.asarray(b, np.float64)).astype(np.float32)


def softcap(x, *, cap: float) -> np.ndarray:
    """cap * tanh(x / cap): Gemma 2's final-logit soft-capping."""
    return (cap * np.tanh(np.asarray(x, np.float64) / cap)).astype(np.float32)


def neg_abs(x) -> np.ndarray:
    """-|x|: the target-only convention's logits (the output nearest zero is the largest)."""
    return -np.abs(np.asarray(x, np.float32))


def split_mix(x, *, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(x[0], mix(x[0], x[1])) of x [2, N]: HARP's two streams' original and mixed logits."""
    x = np.asarray(x, np.float32).reshape(2, -1)
    return x[0].copy(), mix(x[0], x[1], beta=beta)


def rand_uniform(shape, step) -> np.ndarray:
    """[..., D] uniforms for rows t = 0.. (flattened) at positions pos + t; `step` as engine.params.pack_step."""
    step = np.asarray(step, np.uint32)
    shape = tuple(np.atleast_1d(shape))
    dim = shape[-1]
    rows = int(np.prod(shape)) // dim
    pos = (int(step[STEP_FIELDS["pos"]]) + np.arange(rows, dtype=np.uint64)) % 2**32
    return rng.uniform(int(step[STEP_FIELDS["seed"]]), pos[:, None], np.arange(dim)[None, :]).reshape(shape)


def copy_bw(x) -> np.ndarray:
    return np.array(x, copy=True)


def softcap_back(y, dy, *, cap: float) -> np.ndarray:
    """Gradient through y = cap * tanh(x / cap), from the capped y: dx = dy * (1 - (y / cap)^2)."""
    r = np.asarray(y, np.float64) / cap
    return (np.asarray(dy, np.float64) * (1.0 - r * r)).astype(np.float32)
