"""Launchers for shaders/local1d.comp (seed idea 10: a layer whose cost is linear in its width)."""
import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError
from ..reference.local1d import check_local1d


def local1d(rec: Recorder, out: Buffer, x: Buffer, weight: Buffer, *, kernel: int, units: int | None = None,
            layer: int = 0, residual: bool = False, wg: int = 256):
    """out[n, i] = sum_k weight[i, k] * x[n, start(i) + k], start(i) = floor(i * (in - kernel + 1) / units)
    in exact integers (engine.reference.local1d explains where the seed's TF float32 version differs).
    x f32[N, in], weight f32[units, kernel] or layers stacked f32[L, units, kernel] (`layer` picks one),
    out f32[N, units]; units defaults to in. residual=True adds into out (out += ...) instead."""
    _dispatch(rec, "local1d_residual" if residual else "local1d", out, x, [weight], kernel, units, layer, wg)


def local1d_swiglu(rec: Recorder, out: Buffer, x: Buffer, gate: Buffer, up: Buffer, *, kernel: int,
                   units: int | None = None, layer: int = 0, wg: int = 256):
    """out = silu(local1d(x, gate)) * local1d(x, up): the Local1D model's gate and up in one pass over x
    (gate and up alike [units, kernel] or stacked by layer, `layer` picking the same one of both)."""
    _dispatch(rec, "local1d_swiglu", out, x, [gate, up], kernel, units, layer, wg)


def _dispatch(rec: Recorder, variant: str, out: Buffer, x: Buffer, weights: list[Buffer], kernel: int,
              units: int | None, layer: int, wg: int):
    in_width = x.shape[-1]
    units = check_local1d(in_width, kernel, units)
    rows = x.size // in_width
    per = units * kernel
    for name, b in (("out", out), ("x", x), *(("weight", w) for w in weights)):
        if b.dtype != np.float32:
            raise VkharpError(f"local1d: {name} ({b.name!r}) must be f32, got {b.dtype}")
    for w in weights:
        if w.size % per or (len(w.shape) > 1 and tuple(w.shape[-2:]) != (units, kernel)):
            raise VkharpError(f"local1d: weight {w.shape} must be [{units}, {kernel}] (units, kernel), "
                              f"or such matrices stacked by layer")
        if not 0 <= layer < w.size // per:
            raise VkharpError(f"local1d: weight {w.name!r} holds {w.size // per} layer(s), not layer {layer}")
    if out.size != rows * units or (len(out.shape) > 1 and out.shape[-1] != units):
        raise VkharpError(f"local1d: out {out.shape} must be [{rows}, {units}] for x {x.shape}")
    if out is x:
        raise VkharpError("local1d: out must not be x (other invocations still read the window it would overwrite)")
    m = in_width - kernel + 1
    q0, r0 = divmod(m, units)
    wide = int((units - 1) * r0 >= 2**32)
    rec.dispatch(variant, [out, x, *weights], grid1d(rec.device, rows * units, wg),
                 {"WG": wg, "NROWS": rows, "IN": in_width, "KERNEL": kernel, "UNITS": units,
                  "Q0": q0, "R0": r0, "WIDE": wide}, {"woff": layer * per})
