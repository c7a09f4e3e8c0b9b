"""Launcher for shaders/grad_weight.comp: dw (+)= scale · dyᵀ·x, the weight gradient of x·Wᵀ.

Used for LoRA's A and B (one side of the product is the rank, 8 or 16) and for the f32 weights of
small models trained from scratch. Each output has one writer that sums the tokens in order, so
the result is deterministic (no float atomics)."""
from __future__ import annotations

import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError

MAX_ROWS, MAX_COLS = 8, 8   # the shader's MAX_TR, MAX_TC (registers per lane)


def _region(op: str, what: str, b: Buffer, offset: int, size: int):
    if offset < 0 or offset + size > b.size:
        raise VkharpError(f"{op}: {what} ({b.name!r}, {b.size} values) has no {size} values at offset {offset}")


def grad_weight(rec: Recorder, dw: Buffer, dy: Buffer, x: Buffer, *, accumulate: bool = False, scale: float = 1.0,
                layer: int = 0, rows: int | None = None, tokens: int | None = None, dy_offset: int = 0,
                x_offset: int = 0, wg: int | None = None, rows_per_lane: int = 8, cols_per_lane: int | None = None):
    """dw[r, c] (+)= scale * sum_n dy[n, r] * x[n, c]: dy f32[N, R], x f32[N, C], dw f32[R, C].

    C is dw's last dimension; R its second last, or `rows` for a layer-stacked dw ([L, R, C] or
    [L*R, C], as engine/tune/lora.py stacks A and B): `layer` picks the slice written. dy and x are
    read from element offsets dy_offset and x_offset (a layer's slice of stacked activations);
    N = tokens, by default all the tokens the buffers hold past the offsets. The offsets are push
    constants, so every layer shares one pipeline.
    wg, rows_per_lane and cols_per_lane set the work split (see the shader's header); narrow C
    gets fewer column lanes and more row lanes. Defaults: CPU devices (lavapipe) one SIMD program of
    8 lanes with 8 x 8 outputs each (measured best: 1.4 GMAC/s per thread on 576 x 576 over 256
    tokens); GPUs 64 lanes of 8 x 4."""
    op = "grad_weight"
    for b, what in ((dw, "dw"), (dy, "dy"), (x, "x")):
        if b.dtype != np.float32:
            raise VkharpError(f"{op}: {what} buffer {b.name!r} must be f32, got {b.dtype}")
    if len(dw.shape) < 2 and rows is None:
        raise VkharpError(f"{op}: dw must have a 2-D shape [R, C] (or [L, R, C]), got {dw.shape}")
    c = dw.shape[-1]
    r = int(rows) if rows is not None else dw.shape[-2]
    if r < 1 or dw.size % (r * c):
        raise VkharpError(f"{op}: dw {dw.shape} is not a stack of [{r}, {c}] matrices")
    n_layers = dw.size // (r * c)
    if not 0 <= layer < n_layers:
        raise VkharpError(f"{op}: dw {dw.shape} holds {n_layers} layers of [{r}, {c}], not layer {layer}")
    if tokens is None:
        n, rem_dy = divmod(dy.size - dy_offset, r)
        n_x, rem_x = divmod(x.size - x_offset, c)
        if rem_dy or rem_x or n != n_x or n < 1:
            raise VkharpError(f"{op}: dy {dy.shape} and x {x.shape} must be [N, {r}] and [N, {c}] for dw "
                              f"{dw.shape} (past offsets {dy_offset} and {x_offset}; or pass tokens=N)")
    else:
        n = int(tokens)
        if n < 1:
            raise VkharpError(f"{op}: tokens must be >= 1, got {tokens}")
    _region(op, "dy", dy, dy_offset, n * r)
    _region(op, "x", x, x_offset, n * c)
    if dw is dy or dw is x:
        raise VkharpError(f"{op}: dw must be a buffer of its own")
    if not np.isfinite(scale):
        raise VkharpError(f"{op}: scale must be finite, got {scale}")
    cpu = rec.device.info.type == "cpu"
    wg = wg or (8 if cpu else 64)
    cols_per_lane = cols_per_lane or (8 if cpu else 4)
    if not (1 <= rows_per_lane <= MAX_ROWS and 1 <= cols_per_lane <= MAX_COLS):
        raise VkharpError(f"{op}: rows_per_lane must be 1..{MAX_ROWS} and cols_per_lane 1..{MAX_COLS}")
    if not 1 <= wg <= rec.device.info.max_workgroup_invocations:
        raise VkharpError(f"{op}: wg must be 1..{rec.device.info.max_workgroup_invocations}, got {wg}")
    # column lanes: enough for C (at most wg), a divisor of wg so the rest form whole row lanes
    need = -(-c // cols_per_lane)
    lc = max(d for d in range(1, wg + 1) if wg % d == 0 and d <= max(need, 1))
    lr = wg // lc
    groups = -(-r // (lr * rows_per_lane)) * -(-c // (lc * cols_per_lane))
    rec.dispatch("grad_weight", [dw, dy, x], grid1d(rec.device, groups, 1),
                 {"WG": wg, "R": r, "C": c, "N": n, "TR": rows_per_lane, "TC": cols_per_lane, "LC": lc,
                  "ACC": int(accumulate), "SCALE": float(scale)},
                 {"dwo": layer * r * c, "dyo": dy_offset, "xo": x_offset})
