"""Launchers for shaders/local1d.comp (seed idea 10: a layer whose cost is linear in its width) and its
backward, shaders/local1d_back.comp."""
import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError
from ..reference.local1d import check_local1d

ROWS_PER_INVOCATION = 8   # the shader's MAX_RT: rows that share one load of each weight


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
    rt = min(ROWS_PER_INVOCATION, rows)
    rec.dispatch(variant, [out, x, *weights], grid1d(rec.device, -(-rows // rt) * units, wg),
                 {"WG": wg, "NROWS": rows, "IN": in_width, "KERNEL": kernel, "UNITS": units,
                  "Q0": q0, "R0": r0, "WIDE": wide, "RT": rt}, {"woff": layer * per})


def _back_consts(in_width: int, kernel: int, units: int, rows: int, wg: int) -> dict:
    m = in_width - kernel + 1
    q0, r0 = divmod(m, units)
    wide = int((in_width + 1) * (units + 1) >= 2**32 or (units - 1) * r0 >= 2**32)
    return {"WG": wg, "NROWS": rows, "IN": in_width, "KERNEL": kernel, "UNITS": units, "Q0": q0, "R0": r0,
            "WIDE": wide}


def _back_check(name: str, out: Buffer, dy: Buffer, other: Buffer, in_width: int, kernel: int, units):
    units = check_local1d(in_width, kernel, units)
    for bname, b in (("out", out), ("dy", dy), (name, other)):
        if b.dtype != np.float32:
            raise VkharpError(f"local1d backward: {bname} ({b.name!r}) must be f32, got {b.dtype}")
    if dy.size % units or (len(dy.shape) > 1 and dy.shape[-1] != units):
        raise VkharpError(f"local1d backward: dy {dy.shape} must be [N, {units}] (rows, units)")
    rows = dy.size // units
    if out.kind in ("const", "param"):
        raise VkharpError(f"local1d backward: out ({out.name!r}) is a read-only {out.kind!r} buffer")
    return units, rows


def _layer_check(name: str, what: str, w: Buffer, units: int, kernel: int, layer: int) -> dict:
    """The push constant of `layer`'s matrix in w (f32[units, kernel] or stacked [L, units, kernel])."""
    per = units * kernel
    if w.size % per or (len(w.shape) > 1 and tuple(w.shape[-2:]) != (units, kernel)):
        raise VkharpError(f"{name}: {what} {w.shape} must be [{units}, {kernel}] (units, kernel), or such "
                          f"matrices stacked by layer")
    if int(layer) != layer or not 0 <= layer < w.size // per:
        raise VkharpError(f"{name}: {what} {w.name!r} holds {w.size // per} layer(s), not layer {layer}")
    return {"woff": int(layer) * per}


def local1d_back_x(rec: Recorder, dx: Buffer, dy: Buffer, weight: Buffer, *, kernel: int, units: int | None = None,
                   layer: int = 0, accumulate: bool = False, wg: int = 64):
    """dx[n, j] (+)= sum over the units i whose window covers j of weight[i, j - start(i)] * dy[n, i].
    dx f32[N, in], dy f32[N, units], weight f32[units, kernel] or stacked [L, units, kernel] (`layer`
    picks one, as the forward's); accumulate adds to dx instead of overwriting it. One invocation
    per (n, j), a fixed summation order: deterministic."""
    in_width = dx.shape[-1]
    units, rows = _back_check("weight", dx, dy, weight, in_width, kernel, units)
    push = _layer_check("local1d_back_x", "weight", weight, units, kernel, layer)
    if dx.size != rows * in_width:
        raise VkharpError(f"local1d_back_x: dx {dx.shape} must be [{rows}, {in_width}] for dy {dy.shape}")
    rec.dispatch("local1d_back_x_acc" if accumulate else "local1d_back_x", [dx, dy, weight],
                 grid1d(rec.device, rows * in_width, wg), _back_consts(in_width, kernel, units, rows, wg), push)


def local1d_back_w(rec: Recorder, dw: Buffer, dy: Buffer, x: Buffer, *, kernel: int, units: int | None = None,
                   layer: int = 0, accumulate: bool = False, wg: int = 64):
    """dw[i, k] (+)= sum_n dy[n, i] * x[n, start(i) + k]. dw f32[units, kernel] or stacked
    [L, units, kernel] (`layer`: the slice written), dy f32[N, units], x f32[N, in]; accumulate adds
    to dw. One invocation per (i, k), summing over n in order."""
    in_width = x.shape[-1]
    units, rows = _back_check("x", dw, dy, x, in_width, kernel, units)
    if x.size != rows * in_width:
        raise VkharpError(f"local1d_back_w: x {x.shape} must be [{rows}, {in_width}] for dy {dy.shape}")
    push = _layer_check("local1d_back_w", "dw", dw, units, kernel, layer)
    rec.dispatch("local1d_back_w_acc" if accumulate else "local1d_back_w", [dw, dy, x],
                 grid1d(rec.device, units * kernel, wg), _back_consts(in_width, kernel, units, rows, wg), push)
