"""Launcher for shaders/matmul_t.comp: dx (+)= dy·W, the backward of x·Wᵀ through a frozen weight.

Training adapters over frozen base weights (issue 14) needs the gradient of every linear layer's
input, dx = dy·W, in every weight format the forward reads. The shader decodes each 32-column
block with the arithmetic of shaders/include/weights.glsl's `weight_at` (the same roundings), so
the twin (reference.matmul_t) decodes the same bits. A row range (rows=(row0, count)) selects one matrix of a row-stacked one ([Wq; Wk; Wv],
[Wg; Wu]). Each weight part touched is one dispatch over its rows; the first writes (or adds to)
dx and the others add to it, in part order: dx is a read-write binding, so the recorder puts a
barrier between them and the sum is deterministic.

Speed on lavapipe is that of the forward product on the same matrix (SmolLM2's tied 49152 x 576
head, q8_0, 32 tokens: ~0.3 s either way on this 2-core machine). On a GPU the work split gives
few groups for narrow matrices (one per 32 blocks per token tile): correct, not yet tuned there.
"""
from __future__ import annotations

import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError
from ..quant import check_format
from ..weights import DeviceWeight

MAX_TOKENS = 8            # TN: tokens per group (the shader's MAX_TN)


def _lanes(info, ntok: int, col_lanes: int | None, tokens: int | None) -> tuple[int, int]:
    """(WG, TN): WG column lanes (one 32-column block each), TN tokens per group. CPU devices
    (lavapipe): one SIMD program of 8 lanes, 8 tokens (each row's decoded block serves 8 tokens).
    GPUs: 32 lanes, 4 tokens (not tuned on a GPU yet)."""
    cpu = info.type == "cpu"
    tn = tokens or min(ntok, MAX_TOKENS if cpu else 4)
    wg = col_lanes or (8 if cpu else 32)
    if not 1 <= tn <= MAX_TOKENS:
        raise VkharpError(f"matmul_t: tokens per group must be 1..{MAX_TOKENS}, got {tn}")
    if not 1 <= wg <= info.max_workgroup_invocations:
        raise VkharpError(f"matmul_t: column lanes must be 1..{info.max_workgroup_invocations}, got {wg}")
    return wg, tn


def matmul_t(rec: Recorder, dx: Buffer, weight: DeviceWeight, dy: Buffer, *, layer: int = 0,
             rows: tuple[int, int] | None = None, accumulate: bool = False, ntok: int | None = None,
             dx_offset: int = 0, dy_offset: int = 0, col_lanes: int | None = None, tokens: int | None = None):
    """dx[n, c] (+)= sum_r dy[n, r] * W[row0 + r, c]: dy f32[N, count], dx f32[N, cols].

    rows=(row0, count) picks rows [row0, row0 + count) of the layer's matrix (default: all);
    accumulate=True adds into dx (the residual stream's gradient summed in the same dispatch).
    dx_offset / dy_offset: element offsets of the [N, cols] and [N, count] regions (a layer's slice of
    layer-stacked activations; push constants, so every layer shares one pipeline); ntok = N, by
    default all the tokens dx holds past its offset.
    col_lanes / tokens override the work split (tests; see the shader's header)."""
    check_format(weight.format)
    name = weight.name or "weight"
    row0, count = (0, weight.rows) if rows is None else (int(rows[0]), int(rows[1]))
    if count < 1 or row0 < 0 or row0 + count > weight.rows:
        raise VkharpError(f"matmul_t: rows ({row0}, {count}) is not a range of {name}'s {weight.rows} rows")
    for b, what in ((dx, "dx"), (dy, "dy")):
        if b.dtype != np.float32:
            raise VkharpError(f"matmul_t: {what} buffer {b.name!r} must be f32, got {b.dtype}")
    cols = weight.cols
    if ntok is None:
        if dx_offset or dy_offset:
            raise VkharpError("matmul_t: with dx_offset or dy_offset, pass ntok (the tokens of the region)")
        if dx.size % cols:
            raise VkharpError(f"matmul_t: dx has {dx.size} values, not a multiple of {name}'s {cols} columns")
        ntok = dx.size // cols
        if dy.size != ntok * count:
            raise VkharpError(f"matmul_t: dy has {dy.size} values, expected {ntok} x {count} (tokens x rows) "
                              f"for dx {dx.shape} and rows ({row0}, {count}) of {name}")
    ntok = int(ntok)
    for b, what, off, size in ((dx, "dx", dx_offset, ntok * cols), (dy, "dy", dy_offset, ntok * count)):
        if ntok < 1 or off < 0 or off + size > b.size:
            raise VkharpError(f"matmul_t: {what} ({b.name!r}, {b.size} values) has no {ntok} x "
                              f"{size // max(ntok, 1)} values at offset {off}")
    if dx is dy:
        raise VkharpError("matmul_t: dx and dy must be different buffers")
    dev = rec.device
    wg, tn = _lanes(dev.info, ntok, col_lanes, tokens)
    nb = -(-cols // 32)
    groups = grid1d(dev, -(-nb // wg) * -(-ntok // tn), 1)
    first = True
    for part, wrow in weight.parts_for(layer):
        lo, hi = max(row0, part.row0), min(row0 + count, part.row0 + part.rows)
        if lo >= hi:
            continue
        fmt = part.format or weight.format   # mixed-precision models change format per layer
        bufs = [dx, part.qs] + ([part.scales] if part.scales is not None else []) + [dy]
        consts = {"WG": wg, "COLS": cols, "NTOK": ntok, "TN": tn, "NR": hi - lo, "DYS": count,
                  "DY0": lo - row0, "ACC": int(accumulate or not first)}
        odd = "_odd" if cols % 32 else ""   # f32/f16 rows that are not whole 16-byte words: scalar loads
        rec.dispatch(f"matmul_t_{check_format(fmt)}{odd}", bufs, groups, consts, {"wrow": wrow + lo - part.row0, "dxo": dx_offset, "dyo": dy_offset})
        first = False
