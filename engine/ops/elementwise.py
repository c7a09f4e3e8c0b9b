"""Launchers for simple element-wise shaders (shaders/fill_u32.comp, shaders/elementwise.comp)."""
import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError
from ..params import STEP_WORDS


def fill_u32(rec: Recorder, out: Buffer, *, value: int = 0, wg: int = 256):
    rec.dispatch("fill_u32", [out], grid1d(rec.device, out.size, wg), {"WG": wg, "N": out.size, "VALUE": value})


def _check_f32(op: str, **bufs: Buffer):
    sizes = {name: b.size for name, b in bufs.items()}
    for name, b in bufs.items():
        if b.dtype != np.float32:
            raise VkharpError(f"{op}: {name} ({b.name!r}) must be f32, got {b.dtype}")
    if len(set(sizes.values())) != 1:
        raise VkharpError(f"{op}: sizes do not agree: " + ", ".join(f"{k} {bufs[k].shape}" for k in bufs))


def _go(rec: Recorder, variant: str, buffers: list, n: int, consts: dict, wg: int):
    rec.dispatch(variant, buffers, grid1d(rec.device, n, wg), {"WG": wg, "N": n, **consts})


def add(rec: Recorder, out: Buffer, a: Buffer, b: Buffer, *, wg: int = 256):
    """out = a + b. `out` may be `a` or `b` (residual a += b in place: an 'rw' binding variant)."""
    _check_f32("add", out=out, a=a, b=b)
    if out is a or out is b:  # a + b == b + a exactly in IEEE arithmetic
        _go(rec, "add_inplace", [out, b if out is a else a], out.size, {}, wg)
    else:
        _go(rec, "add", [out, a, b], out.size, {}, wg)


def scale(rec: Recorder, out: Buffer, x: Buffer, *, s: float, wg: int = 256):
    """out = s * x (`out` may be `x`)."""
    _check_f32("scale", out=out, x=x)
    if out is x:
        _go(rec, "scale_inplace", [out], out.size, {"CA": s}, wg)
    else:
        _go(rec, "scale", [out, x], out.size, {"CA": s}, wg)


def softcap(rec: Recorder, out: Buffer, x: Buffer, *, cap: float, wg: int = 256):
    """out = cap * tanh(x / cap) (Gemma 2's final logits; `out` may be `x`)."""
    _check_f32("softcap", out=out, x=x)
    if not (np.isfinite(cap) and cap > 0):
        raise VkharpError(f"softcap: the cap must be a positive finite number, got {cap}")
    if out is x:
        _go(rec, "softcap_inplace", [out], out.size, {"CA": float(cap)}, wg)
    else:
        _go(rec, "softcap", [out, x], out.size, {"CA": float(cap)}, wg)


def neg_abs(rec: Recorder, out: Buffer, x: Buffer, *, wg: int = 256):
    """out = -|x|: a target-only model's outputs (distances) as logits (`out` may be `x`)."""
    _check_f32("neg_abs", out=out, x=x)
    if out is x:
        _go(rec, "neg_abs_inplace", [out], out.size, {}, wg)
    else:
        _go(rec, "neg_abs", [out, x], out.size, {}, wg)


def mix(rec: Recorder, out: Buffer, a: Buffer, b: Buffer, *, beta: float, wg: int = 256):
    """out = beta * a + (1 - beta) * b: HARP's logit mix (beta on the original logits, as its code).
    `out` may be `a` or `b`."""
    _check_f32("mix", out=out, a=a, b=b)
    if not np.isfinite(beta):
        raise VkharpError(f"mix: beta must be finite, got {beta}")
    ca, cb = float(beta), 1.0 - float(beta)
    if out is a:
        _go(rec, "mix_inplace", [a, b], out.size, {"CA": ca, "CB": cb}, wg)
    elif out is b:
        _go(rec, "mix_inplace", [b, a], out.size, {"CA": cb, "CB": ca}, wg)
    else:
        _go(rec, "mix", [out, a, b], out.size, {"CA": ca, "CB": cb}, wg)


def split_mix(rec: Recorder, first: Buffer, mixed: Buffer, x: Buffer, *, beta: float, wg: int = 256):
    """HARP's two streams: first = x[0], mixed = beta * x[0] + (1 - beta) * x[1] for x f32[2, N]."""
    _check_f32("split_mix", first=first, mixed=mixed)
    if x.dtype != np.float32 or x.size != 2 * first.size:
        raise VkharpError(f"split_mix: x {x.shape} must be f32 [2, {first.size}]")
    if not np.isfinite(beta):
        raise VkharpError(f"split_mix: beta must be finite, got {beta}")
    _go(rec, "split_mix", [first, mixed, x], first.size, {"CA": float(beta), "CB": 1.0 - float(beta)}, wg)


def rand_uniform(rec: Recorder, out: Buffer, step: Buffer, *, wg: int = 256):
    """out[t, d] = rng.uniform(seed, pos + t, d) with seed and pos read from the step buffer at replay."""
    if out.dtype != np.float32:
        raise VkharpError(f"rand_uniform: out ({out.name!r}) must be f32, got {out.dtype}")
    _check_step("rand_uniform", step)
    dim = out.shape[-1]
    _go(rec, "rand_uniform", [out, step], out.size, {"D": dim}, wg)


def _check_step(op: str, step: Buffer):
    if step is None or step.dtype != np.uint32 or step.size < STEP_WORDS:
        raise VkharpError(f"{op}: step must be a u32 buffer of at least {STEP_WORDS} words "
                          f"(engine.params.write_step), got {step!r}")


def copy_bw(rec: Recorder, out: Buffer, x: Buffer, *, run: int = 256, wg: int = 64):
    """out = x (sizes a multiple of 4): the bandwidth probe of `vkharp bench`."""
    if out.size != x.size or x.size % 4:
        raise VkharpError(f"copy_bw: sizes must agree and be multiples of 4, got {out.size} and {x.size}")
    n4 = x.size // 4
    rec.dispatch("copy_bw", [out, x], grid1d(rec.device, -(-n4 // run), wg), {"WG": wg, "N4": n4, "RUN": run})


def softcap_back(rec: Recorder, dx: Buffer, y: Buffer, dy: Buffer, *, cap: float, wg: int = 256):
    """dx = dy * (1 - (y / cap)^2): the gradient through y = cap * tanh(x / cap) (Gemma 2's final logits)
    from the capped y. `dx` may be `dy` (in place)."""
    _check_f32("softcap_back", dx=dx, y=y, dy=dy)
    if not (np.isfinite(cap) and cap > 0):
        raise VkharpError(f"softcap_back: the cap must be a positive finite number, got {cap}")
    if dx is y:
        raise VkharpError("softcap_back: dx may overwrite dy, not y")
    if dx is dy:
        _go(rec, "softcap_back_inplace", [dy, y], dy.size, {"CA": float(cap)}, wg)
    else:
        _go(rec, "softcap_back", [dx, y, dy], dx.size, {"CA": float(cap)}, wg)
