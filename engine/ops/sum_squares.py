"""Launcher for shaders/sum_squares.comp: partial sums of x² for the global gradient norm.

Gradient clipping by global norm is decided on the host: each gradient buffer's G partial sums go
to a small f32 buffer, the host reads and adds them (float64) and writes the clipping factor into
the optimizer's hyperparameters (engine/ops/adamw.py: grad_scale). Fixed chunks and a fixed
reduction tree make the partials identical from run to run (no float atomics)."""
from __future__ import annotations

import numpy as np

from ..device import Buffer, Device, Recorder
from ..errors import VkharpError

WG = 256
MIN_PER_LANE = 16     # elements per lane before another group is worth it
MAX_GROUPS = 256


def sum_squares_groups(device: Device | None, n: int) -> int:
    """G, the number of partial sums (groups) sum_squares writes for n elements: one group per
    WG * MIN_PER_LANE elements, at most MAX_GROUPS (it depends on n only)."""
    if n < 1:
        raise VkharpError(f"sum_squares: needs at least one element, got {n}")
    return max(1, min(MAX_GROUPS, -(-n // (WG * MIN_PER_LANE))))


def chunk(n: int, groups: int) -> int:
    """Elements per group (the last group may have fewer)."""
    return -(-n // groups)


def sum_squares(rec: Recorder, out: Buffer, x: Buffer, *, offset: int = 0):
    """out[offset + g] = sum of x[i]^2 over chunk g, g < sum_squares_groups(device, x.size).

    `offset` lets the partials of many gradients share one out buffer (record them inside
    rec.parallel(): they write disjoint words), read back once."""
    for b, what in ((out, "out"), (x, "x")):
        if b.dtype != np.float32:
            raise VkharpError(f"sum_squares: {what} buffer {b.name!r} must be f32, got {b.dtype}")
    g = sum_squares_groups(rec.device, x.size)
    if offset < 0 or out.size < offset + g:
        raise VkharpError(f"sum_squares: out has {out.size} values; {x.size} elements need {g} partial sums "
                          f"at offset {offset} (sum_squares_groups)")
    rec.dispatch("sum_squares", [out, x], (g, 1, 1),
                 {"WG": WG, "N": x.size, "CHUNK": chunk(x.size, g), "OFF": offset})
