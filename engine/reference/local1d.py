"""Twin of shaders/local1d.comp: Local1D from seed idea 10, with exact integer window starts.

The seed's TensorFlow layer computes the starts as
    int32(float32(i) * float32((in - kernel + 1) / units))
which is floor(i * (in - kernel + 1) / units) only while float32 rounding does not cross an
integer. It does, in both directions: in=14, kernel=1, units=46 gives unit 23 the start 6 instead of
23*14/46 = 7; with the default units = in it happens for in=94, kernel=31 (among in < 2000 and
kernel in {1,2,3,5,8,16,31}: 94, 115, 230, 1150, 1563); for units = 100 * in it rounds up past the
exact value (in=363, kernel=5); and past 2**24 units float32 cannot even tell i from i + 1.
Here the starts are exact, so every unit's window is the evenly spaced one the layer intends, and
start(units - 1) + kernel <= in always holds.
"""
from __future__ import annotations

import numpy as np

from ..errors import VkharpError


def check_local1d(in_width: int, kernel: int, units: int | None) -> int:
    """Validate the layer's sizes; returns units (defaulting to in_width, as the seed's units < 1)."""
    if units is None or units == 0:
        units = in_width
    if int(kernel) != kernel or kernel < 1:
        raise VkharpError(f"local1d: kernel must be a positive integer, got {kernel}")
    if kernel > in_width:
        raise VkharpError(f"local1d: kernel {kernel} is wider than the input ({in_width})")
    if int(units) != units or units < 1:
        raise VkharpError(f"local1d: units must be >= 1 (or None for the input width), got {units}")
    if units >= 2**32 or in_width >= 2**32:
        raise VkharpError(f"local1d: sizes must be below 2**32, got in={in_width}, units={units}")
    return int(units)


def window_starts(in_width: int, kernel: int, units: int | None = None) -> np.ndarray:
    """start(i) = floor(i * (in - kernel + 1) / units) for i < units, exactly (uint64: both < 2**32)."""
    units = check_local1d(in_width, kernel, units)
    m = np.uint64(in_width - kernel + 1)
    return ((np.arange(units, dtype=np.uint64) * m) // np.uint64(units)).astype(np.int64)


def local1d(x, weight, *, kernel: int, units: int | None = None) -> np.ndarray:
    """x [..., in], weight [units, kernel] -> float32 [..., units] (float64 inside)."""
    x = np.asarray(x, np.float64)
    units = check_local1d(x.shape[-1], kernel, units)
    weight = np.asarray(weight, np.float64)
    if weight.shape != (units, kernel):
        raise VkharpError(f"local1d: weight {weight.shape} must be [{units}, {kernel}] (units, kernel)")
    idx = window_starts(x.shape[-1], kernel, units)[:, None] + np.arange(kernel)
    return np.einsum("...ik,ik->...i", x[..., idx], weight).astype(np.float32)


def local1d_back_x(dy, weight, *, kernel: int, in_width: int, units: int | None = None) -> np.ndarray:
    """dx [..., in] of the forward above: dx[n, start(i) + k] += weight[i, k] * dy[n, i] (float64 inside)."""
    dy = np.asarray(dy, np.float64)
    units = check_local1d(in_width, kernel, units)
    weight = np.asarray(weight, np.float64)
    if weight.shape != (units, kernel) or dy.shape[-1] != units:
        raise VkharpError(f"local1d_back_x: weight {weight.shape} must be [{units}, {kernel}] and dy [..., {units}]")
    idx = window_starts(in_width, kernel, units)[:, None] + np.arange(kernel)
    dx = np.zeros(dy.shape[:-1] + (in_width,))
    contrib = dy[..., :, None] * weight                      # [..., units, kernel]
    flat = dx.reshape(-1, in_width)
    for row, c in zip(flat, contrib.reshape(-1, units, kernel)):
        np.add.at(row, idx, c)
    return dx.astype(np.float32)


def local1d_back_w(dy, x, *, kernel: int, units: int | None = None) -> np.ndarray:
    """dweight [units, kernel] of the forward above: sum_n dy[n, i] * x[n, start(i) + k] (float64 inside)."""
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    units = check_local1d(x.shape[-1], kernel, units)
    if dy.shape[-1] != units or dy.shape[:-1] != x.shape[:-1]:
        raise VkharpError(f"local1d_back_w: dy {dy.shape} must be [..., {units}] over the rows of x {x.shape}")
    idx = window_starts(x.shape[-1], kernel, units)[:, None] + np.arange(kernel)
    return np.einsum("ni,nik->ik", dy.reshape(-1, units), x[..., idx].reshape(-1, units, kernel)).astype(np.float32)
