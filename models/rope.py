"""RoPE inverse frequencies exactly as transformers computes them (default, linear, llama3 scaling).

The runtime uploads these (f32) and rotates with HF's half-split form; keeping the frequency maths
here, in numpy, lets a test compare them with transformers' ROPE_INIT_FUNCTIONS.
"""
from __future__ import annotations

import math

import numpy as np

from engine.errors import VkharpError


def inv_freq(head_dim: int, theta: float, scaling: dict | None = None) -> np.ndarray:
    """f32[head_dim // 2]: theta ** (-2i / head_dim), then the scaling rule of `scaling["rope_type"]`."""
    exponent = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
    # torch: 1.0 / (base ** exponent) in f32; the power rounded from f64 matches its pow to within one ulp.
    freq = np.float32(1.0) / (np.float64(theta) ** exponent.astype(np.float64)).astype(np.float32)
    kind = (scaling or {}).get("rope_type", "default")
    if kind == "default":
        return freq
    factor = float(scaling["factor"])
    if kind == "linear":
        return (freq / np.float32(factor)).astype(np.float32)
    if kind == "llama3":
        return _llama3(freq, factor, float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"]),
                       float(scaling["original_max_position_embeddings"]))
    raise VkharpError(f"RoPE scaling {kind!r} is not supported (supported: default, linear, llama3)")


def _llama3(freq: np.ndarray, factor: float, low: float, high: float, old_ctx: float) -> np.ndarray:
    # transformers' _compute_llama3_parameters, step for step in f32; torch computes `scalar / tensor`
    # as tensor.reciprocal() * scalar, and so does this.
    f32 = np.float32
    f = freq.astype(f32)
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    wavelen = (f32(1) / f) * f32(2 * math.pi)
    scaled = np.where(wavelen > low_wavelen, f / f32(factor), f).astype(f32)
    smooth = (((f32(1) / wavelen) * f32(old_ctx) - f32(low)) / f32(high - low)).astype(f32)
    smoothed = ((1 - smooth) * scaled / np.float32(factor) + smooth * scaled).astype(np.float32)
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)
