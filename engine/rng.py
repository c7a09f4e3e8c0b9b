"""Counter-based RNG: the numpy twin of shaders/include/rng.glsl, bit for bit.

Philox-2x32-10 (Salmon et al., SC'11) with counter (position, dim) and key seed. A counter-based
generator is a pure function, so a dropout mask or a sampling draw depends only on
(seed, position, dim): the same on the host and in any shader, in any order, for any chunking of
the sequence, and reproducible from the seed alone. `uniform` keeps the top 24 bits of the first
output word, k * 2**-24, which float32 holds exactly, so both sides agree bit for bit.
"""
from __future__ import annotations

import numpy as np

PHILOX_M2x32 = 0xD256D193
PHILOX_W32 = 0x9E3779B9
ROUNDS = 10
_MASK32 = np.uint64(0xFFFFFFFF)


def philox2x32(c0, c1, key, rounds: int = ROUNDS) -> tuple[np.ndarray, np.ndarray]:
    """Philox-2x32-R on broadcast uint32 arrays: counter words (c0, c1), key -> two uint32 words.

    The 32x32->64 product uses uint64 on the host (the shader uses umulExtended); everything else
    wraps modulo 2**32 as in GLSL.
    """
    c0, c1, key = np.broadcast_arrays(*(np.asarray(v, dtype=np.uint64) & _MASK32 for v in (c0, c1, key)))
    x0, x1, k = c0.copy(), c1.copy(), key.copy()
    for _ in range(rounds):
        prod = x0 * np.uint64(PHILOX_M2x32)
        hi, lo = prod >> np.uint64(32), prod & _MASK32
        x0, x1 = hi ^ k ^ x1, lo
        k = (k + np.uint64(PHILOX_W32)) & _MASK32
    return x0.astype(np.uint32), x1.astype(np.uint32)


def uniform(seed, position, dim) -> np.ndarray:
    """float32 in [0, 1) with 24-bit resolution, broadcast over the three uint32 arguments.

    Positions wrap modulo 2**32 (as `pos + t` does in the shader).
    """
    x0, _ = philox2x32(position, dim, seed)
    return (x0 >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)


def dropout_mask(seed: int, pos: int, n_tokens: int, dim: int, p: float) -> np.ndarray:
    """bool [n_tokens, dim]: True where HARP's reframing zeroes element (t, d),
    i.e. uniform(seed, pos + t, d) < p, with p rounded to float32 as the shader reads it."""
    positions = (np.uint64(pos) + np.arange(n_tokens, dtype=np.uint64)) & _MASK32
    u = uniform(seed, positions[:, None], np.arange(dim, dtype=np.uint64)[None, :])
    return u < np.float32(p)
