"""RoPE inverse frequencies exactly as transformers computes them (default, linear, llama3, longrope).

The values are reproduced bit for bit where possible (f32 arithmetic in the same order, including
torch's `scalar / tensor` = `reciprocal(tensor) * scalar`), because the model was trained with those
exact values: at position 8192 one ulp of a frequency moves the angle by up to 5e-4 rad. The runtime
uploads them (f32) and rotates with shaders/rope.comp; tests compare them with transformers.

longrope (Phi-3, Phi-4-mini) has two factor sets; transformers switches between them with the length
of the sequence it is given (long once a position passes original_max_position_embeddings, for every
position of that call). A recorded program cannot switch, so the set is chosen once from the loaded
context, as llama.cpp does (long when ctx > original_max_position_embeddings): the same numbers as
transformers for every sequence when ctx fits the original window, and for sequences longer than it
otherwise. Its attention factor multiplies HF's cos and sin, so q·k by its square: `attention_factor`
returns it and the runtime folds the square into the attention scale (exact up to one rounding).
"""
from __future__ import annotations

import math

import numpy as np

from engine.errors import VkharpError

SUPPORTED_TYPES = ("default", "linear", "llama3", "longrope")


def rotary_dim(head_dim: int, partial_rotary_factor: float = 1.0) -> int:
    """Rotated dims, as HF: int(head_dim * partial_rotary_factor); must be even and positive."""
    dim = int(head_dim * partial_rotary_factor)
    if dim <= 0 or dim % 2 or dim > head_dim:
        raise VkharpError(f"rope: head_dim {head_dim} with partial_rotary_factor {partial_rotary_factor} "
                          f"gives {dim} rotated dims; it must be even and in 2..{head_dim}")
    return dim


def _default_inv_freq(dim: int, theta: float) -> np.ndarray:
    # HF: 1.0 / (base ** (arange(0, dim, 2).float() / dim)) in f32. torch's pow of a Python base and an
    # f32 exponent matches pow in float64 rounded to f32 (checked against torch in tests/test_rope.py).
    exponent = np.arange(0, dim, 2).astype(np.float32) / np.float32(dim)
    power = np.power(np.float64(theta), exponent.astype(np.float64)).astype(np.float32)
    return np.float32(1.0) / power


def _llama3(inv: np.ndarray, scaling: dict) -> np.ndarray:
    """transformers' _compute_llama3_parameters, operation by operation in f32."""
    f32 = np.float32
    try:
        factor = f32(scaling["factor"])
        low = f32(scaling["low_freq_factor"])
        span = f32(scaling["high_freq_factor"] - scaling["low_freq_factor"])
        old_ctx = scaling["original_max_position_embeddings"]
    except KeyError as exc:
        raise VkharpError(f"rope scaling 'llama3' needs {exc.args[0]!r} (have {sorted(scaling)})") from None
    low_wavelen = f32(old_ctx / scaling["low_freq_factor"])
    high_wavelen = f32(old_ctx / scaling["high_freq_factor"])
    wavelen = (f32(1) / inv) * f32(2 * math.pi)                 # torch: scalar / t = reciprocal(t) * scalar
    scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = ((f32(1) / wavelen) * f32(old_ctx) - low) / span
    smoothed = (f32(1) - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def _longrope_factors(scaling: dict, dim: int, ctx: int | None) -> np.ndarray:
    try:
        orig = int(scaling["original_max_position_embeddings"])
        which = "long_factor" if ctx is not None and ctx > orig else "short_factor"
        factors = np.asarray(scaling[which], dtype=np.float32)
    except KeyError as exc:
        raise VkharpError(f"rope scaling 'longrope' needs {exc.args[0]!r} (have {sorted(scaling)})") from None
    if factors.shape != (dim // 2,):
        raise VkharpError(f"rope scaling 'longrope': {which} has {factors.size} entries, the rotary dims "
                          f"({dim}) need {dim // 2}")
    return factors


def attention_factor(scaling: dict | None, max_position_embeddings: int) -> float:
    """longrope's multiplier of cos and sin (1.0 for every other type), as transformers computes it."""
    if not scaling or scaling.get("rope_type") != "longrope":
        return 1.0
    if scaling.get("attention_factor") is not None:
        return float(scaling["attention_factor"])
    orig = int(scaling["original_max_position_embeddings"])
    factor = scaling.get("factor")
    if factor is None:
        factor = max_position_embeddings / orig
    return 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))


def rope_inv_freq(head_dim: int, theta: float, scaling: dict | None = None, *,
                  partial_rotary_factor: float | None = None, ctx: int | None = None) -> np.ndarray:
    """f32[rotary_dim / 2] inverse frequencies for HF rope types 'default', 'linear', 'llama3', 'longrope'.

    `scaling` is HF's `rope_scaling` / `rope_parameters` dict (key `rope_type` or legacy `type`; its
    `rope_theta` is ignored in favour of `theta`). `partial_rotary_factor` may come from either place.
    ctx: the loaded context, which picks longrope's factor set (module docstring).
    """
    scaling = dict(scaling or {})
    rope_type = scaling.get("rope_type", scaling.get("type", "default")) or "default"
    if rope_type not in SUPPORTED_TYPES:
        raise VkharpError(f"rope type {rope_type!r} is not supported; supported: {', '.join(SUPPORTED_TYPES)}")
    if partial_rotary_factor is None:
        partial_rotary_factor = scaling.get("partial_rotary_factor", 1.0)
    if not theta > 0:
        raise VkharpError(f"rope theta must be positive, got {theta}")
    dim = rotary_dim(head_dim, partial_rotary_factor)
    if rope_type == "longrope":
        # HF: 1.0 / (ext_factors * base**(arange(0, dim, 2) / dim)), f32 throughout
        exponent = np.arange(0, dim, 2).astype(np.float32) / np.float32(dim)
        power = np.power(np.float64(theta), exponent.astype(np.float64)).astype(np.float32)
        return (np.float32(1.0) / (_longrope_factors(scaling, dim, ctx) * power)).astype(np.float32)
    inv = _default_inv_freq(dim, theta)
    if rope_type == "linear":
        if "factor" not in scaling:
            raise VkharpError("rope scaling 'linear' needs 'factor'")
        inv = inv / np.float32(scaling["factor"])
    elif rope_type == "llama3":
        inv = _llama3(inv, scaling)
    return inv.astype(np.float32)


inv_freq = rope_inv_freq  # the name models/base.py uses
