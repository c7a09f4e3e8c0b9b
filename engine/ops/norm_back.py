"""Launcher for shaders/norm_back.comp: the RMSNorm backward (training)."""
import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError
from .norm import _rows_dim


def _scratch(rec: Recorder, rows: int) -> Buffer:
    """rstd f32[rows] shared by every rmsnorm_back of the device (the recorder orders their reuse)."""
    cache = rec.device.__dict__.setdefault("_rmsnorm_back_rstd", {})
    if rows not in cache:
        cache[rows] = rec.device.buffer((rows,), np.float32, "act", name=f"rmsnorm_back.rstd[{rows}]")
    return cache[rows]


def rmsnorm_back(rec: Recorder, dx: Buffer, x: Buffer, weight: Buffer, dy: Buffer, *, eps: float, layer: int = 0,
                 accumulate: bool = False, dweight: Buffer | None = None, dweight_accumulate: bool = False,
                 wg: int = 64):
    """dx (+)= the gradient of y = rmsnorm(x) * weight w.r.t. x, rows of the width of x's last axis.

    weight f32[D] or layer-stacked f32[L, D] (`layer` picks one), as the forward's ops.rmsnorm.
    qk_norm: x, dy, dx [T, H, head_dim] with weight f32[head_dim] are T*H rows sharing the weight.
    accumulate=True adds into dx (the residual stream's gradient). dweight f32[D] (or stacked like the
    weight: the same `layer`) (+)= sum over rows of dy * x / rms(x), in a second dispatch, deterministic."""
    rows, dim = _rows_dim(x, weight, dx, layer)
    for name, b in (("dx", dx), ("x", x), ("weight", weight), ("dy", dy)):
        if b.dtype != np.float32:
            raise VkharpError(f"rmsnorm_back: {name} ({b.name!r}) must be f32, got {b.dtype}")
    if dy.size != x.size:
        raise VkharpError(f"rmsnorm_back: dy {dy.shape} must be shaped like x {x.shape}")
    if dx is x or dx is dy:
        raise VkharpError("rmsnorm_back: dx must be its own buffer (not x or dy): every row is read whole first")
    consts = {"WG": wg, "DIM": dim, "ROWS": rows, "EPS": eps}
    bufs, name = [dx, x, weight, dy], "rmsnorm_back" + ("_acc" if accumulate else "")
    if dweight is not None:
        if dweight.dtype != np.float32 or dweight.size % dim or not (dweight.size == dim or
                                                                     0 <= layer < dweight.size // dim):
            raise VkharpError(f"rmsnorm_back: dweight {dweight.shape} must be f32[{dim}] or stacked [L, {dim}] "
                              f"holding layer {layer}")
        rstd = _scratch(rec, rows)
        bufs, name = bufs + [rstd], name + "_rstd"
    rec.dispatch(name, bufs, grid1d(rec.device, rows, 1), consts, {"woff": layer * dim})
    if dweight is not None:
        rec.dispatch("rmsnorm_dweight" + ("_acc" if dweight_accumulate else ""), [dweight, x, dy, rstd],
                     grid1d(rec.device, dim, 1), consts, {"woff": layer * dim if dweight.size > dim else 0})
