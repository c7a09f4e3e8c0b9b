"""Launcher for shaders/local1d.comp (seed idea 10: a layer whose cost is linear in its width)."""
import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError
from ..reference.local1d import check_local1d


def local1d(rec: Recorder, out: Buffer, x: Buffer, weight: Buffer, *, kernel: int, units: int | None = None,
            wg: int = 256):
    """out[n, i] = sum_k weight[i, k] * x[n, start(i) + k], start(i) = floor(i * (in - kernel + 1) / units)
    in exact integers (engine.reference.local1d explains where the seed's TF float32 version differs).
    x f32[N, in], weight f32[units, kernel], out f32[N, units]; units defaults to in."""
    in_width = x.shape[-1]
    units = check_local1d(in_width, kernel, units)
    rows = x.size // in_width
    for name, b in (("out", out), ("x", x), ("weight", weight)):
        if b.dtype != np.float32:
            raise VkharpError(f"local1d: {name} ({b.name!r}) must be f32, got {b.dtype}")
    if weight.size != units * kernel or (len(weight.shape) > 1 and weight.shape != (units, kernel)):
        raise VkharpError(f"local1d: weight {weight.shape} must be [{units}, {kernel}] (units, kernel)")
    if out.size != rows * units or (len(out.shape) > 1 and out.shape[-1] != units):
        raise VkharpError(f"local1d: out {out.shape} must be [{rows}, {units}] for x {x.shape}")
    m = in_width - kernel + 1
    q0, r0 = divmod(m, units)
    wide = int((units - 1) * r0 >= 2**32)
    rec.dispatch("local1d", [out, x, weight], grid1d(rec.device, rows * units, wg),
                 {"WG": wg, "NROWS": rows, "IN": in_width, "KERNEL": kernel, "UNITS": units,
                  "Q0": q0, "R0": r0, "WIDE": wide})


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


def local1d_back_x(rec: Recorder, dx: Buffer, dy: Buffer, weight: Buffer, *, kernel: int, units: int | None = None,
                   accumulate: bool = False, wg: int = 64):
    """dx[n, j] (+)= sum over the units i whose window covers j of weight[i, j - start(i)] * dy[n, i].
    dx f32[N, in], dy f32[N, units], weight f32[units, kernel]; accumulate adds to dx instead of
    overwriting it. One invocation per (n, j), a fixed summation order: deterministic."""
    in_width = dx.shape[-1]
    units, rows = _back_check("weight", dx, dy, weight, in_width, kernel, units)
    if weight.size != units * kernel or (len(weight.shape) > 1 and weight.shape != (units, kernel)):
        raise VkharpError(f"local1d_back_x: weight {weight.shape} must be [{units}, {kernel}] (units, kernel)")
    if dx.size != rows * in_width:
        raise VkharpError(f"local1d_back_x: dx {dx.shape} must be [{rows}, {in_width}] for dy {dy.shape}")
    rec.dispatch("local1d_back_x_acc" if accumulate else "local1d_back_x", [dx, dy, weight],
                 grid1d(rec.device, rows * in_width, wg), _back_consts(in_width, kernel, units, rows, wg))


def local1d_back_w(rec: Recorder, dw: Buffer, dy: Buffer, x: Buffer, *, kernel: int, units: int | None = None,
                   accumulate: bool = False, wg: int = 64):
    """dw[i, k] (+)= sum_n dy[n, i] * x[n, start(i) + k]. dw f32[units, kernel], dy f32[N, units],
    x f32[N, in]; accumulate adds to dw. One invocation per (i, k), summing over n in order."""
    in_width = x.shape[-1]
    units, rows = _back_check("x", dw, dy, x, in_width, kernel, units)
    if x.size != rows * in_width:
        raise VkharpError(f"local1d_back_w: x {x.shape} must be [{rows}, {in_width}] for dy {dy.shape}")
    if dw.size != units * kernel or (len(dw.shape) > 1 and dw.shape != (units, kernel)):
        raise VkharpError(f"local1d_back_w: dw {dw.shape} must be [{units}, {kernel}] (units, kernel)")
    rec.dispatch("local1d_back_w_acc" if accumulate else "local1d_back_w", [dw, dy, x],
                 grid1d(rec.device, units * kernel, wg), _back_consts(in_width, kernel, units, rows, wg))
