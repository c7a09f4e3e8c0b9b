"""Launcher for shaders/rope.comp (rotary position embedding, in place on q and k).

The frequency table comes from models/rope.py (transformers' values, bit for bit)."""
from __future__ import annotations

import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError
from ..params import STEP_WORDS

STYLES = {"half": "rope_half", "interleaved": "rope_interleaved"}


def heads_view(buf: Buffer, head_dim: int | None, what: str) -> tuple[int, int, int]:
    """(tokens, heads, head_dim) of a [N, H, D] buffer, or of [N, H*D] given head_dim."""
    shape = buf.shape
    if head_dim is None:
        if len(shape) != 3:
            raise VkharpError(f"{what}: buffer {buf.name!r} has shape {shape}; give it shape (tokens, heads, "
                              f"head_dim) or pass head_dim")
        return shape
    if head_dim <= 0 or shape[-1] % head_dim:
        raise VkharpError(f"{what}: buffer {buf.name!r} shape {shape} is not a whole number of heads of {head_dim}")
    n = shape[0] if len(shape) > 1 else 1
    return n, buf.size // (n * head_dim), head_dim


def check_step(step: Buffer, what: str) -> None:
    if step.dtype != np.uint32 or step.size < STEP_WORDS or step.kind not in ("act", "param"):
        raise VkharpError(f"{what}: the step buffer must be an 'act' or 'param' u32 buffer of {STEP_WORDS} words, "
                          f"got {step!r}")


def check_table(inv_freq: Buffer, layer: int, head_dim: int, q_scale: float, what: str) -> int:
    """ROT of a rotary frequency table f32[ROT/2] or f32[L, ROT/2], checked: `layer` in range, ROT <= head_dim,
    q_scale a positive finite number (rope, rope_back and the fused decode attention share it)."""
    rot = 2 * inv_freq.shape[-1]
    layers = inv_freq.size // inv_freq.shape[-1]
    if not 0 <= layer < layers:
        raise VkharpError(f"{what}: layer {layer} is not in inv_freq's {layers} stacked tables")
    if rot > head_dim or inv_freq.dtype != np.float32:
        raise VkharpError(f"{what}: inv_freq {inv_freq!r} rotates {rot} dims but head_dim is {head_dim} "
                          f"(need f32[<= D/2])")
    if not (np.isfinite(q_scale) and q_scale > 0):
        raise VkharpError(f"{what}: q_scale must be a positive finite number, got {q_scale}")
    return rot


def rope(rec: Recorder, q: Buffer, k: Buffer, inv_freq: Buffer, step: Buffer, *, style: str = "half",
         head_dim: int | None = None, layer: int = 0, wg: int = 64, dual: bool = False,
         append: tuple | None = None, kv_layer: int = 0, second: tuple[Buffer, Buffer] | None = None,
         q_scale: float = 1.0):
    """Rotate q f32[N, HQ, D] and k f32[N, HK, D] in place (positions P_POS + t, rows t < P_NTOK;
    dual=True: every row at P_POS, HARP's two streams of one token).

    inv_freq is f32[ROT/2], or f32[L, ROT/2] stacking the layers' tables (`layer` picks one).
    append=(v, k_cache, v_cache): the KV append fused in (one dispatch instead of two, and no barrier
    between them): the rotated k and v go to cache rows P_POS + t of cache layer `kv_layer`;
    second=(k_cache2, v_cache2) with dual: row 1 goes there (HARP's two streams).
    q_scale multiplies q's rotated dims (longrope's attention factor squared; models/rope.py)."""
    if style not in STYLES:
        raise VkharpError(f"rope style {style!r} is unknown; use one of {', '.join(STYLES)}")
    n, hq, d = heads_view(q, head_dim, "rope q")
    nk, hk, dk = heads_view(k, head_dim, "rope k")
    if nk != n or dk != d:
        raise VkharpError(f"rope: q {q.shape} and k {k.shape} differ in tokens or head_dim")
    rot = check_table(inv_freq, layer, d, q_scale, "rope")
    check_step(step, "rope")
    pairs = n * (hq + hk) * (rot // 2)
    bufs, name = [q, k, inv_freq, step], STYLES[style]
    consts = {"WG": wg, "N": n, "HQ": hq, "HK": hk, "D": d, "ROT": rot, "DUAL": int(dual)}
    if q_scale != 1.0:
        consts["QSCALE"] = float(q_scale)
    push = {"layer": layer}
    if append is not None:
        from .attention import cache_dtype, check_cache_pair
        v, kc, vc = append
        if cache_dtype(kc) != "f32":
            raise VkharpError("rope (append): the fused append writes f32 caches one float at a time; for an f16 "
                              "cache record rope without append=, then kv_append")
        if v.size != k.size:
            raise VkharpError(f"rope: v {v.shape} must be shaped like k {k.shape} to be appended with it")
        consts["CTX"] = check_cache_pair(kc, vc, hk * d, "rope (append)", kv_layer)
        bufs, name, push = bufs + [v, kc, vc], name + "_append", {"layer": layer, "kv_layer": kv_layer}
        if second is not None:
            if not dual or n != 2 or any(c.shape != kc.shape for c in second):
                raise VkharpError(f"rope (append): the two-stream form needs dual=True, N = 2 and second caches "
                                  f"shaped like the first {kc.shape}")
            bufs, name = bufs + list(second), name + "_dual"
    elif second is not None:
        raise VkharpError("rope: second caches need append=(v, k_cache, v_cache)")
    rec.dispatch(name, bufs, grid1d(rec.device, pairs, wg), consts, push)


def rope_back(rec: Recorder, dq: Buffer, dk: Buffer, inv_freq: Buffer, step: Buffer, *, style: str = "half",
              head_dim: int | None = None, layer: int = 0, q_scale: float = 1.0, wg: int = 64):
    """The backward of rope, in place on the gradients dq f32[T, HQ, D] and dk f32[T, HK, D]: rotation
    by -angle at positions P_POS + t (rows t < P_NTOK), q's rotated dims times q_scale as the forward
    scales them; the same inv_freq table and styles as rope."""
    if style not in STYLES:
        raise VkharpError(f"rope_back style {style!r} is unknown; use one of {', '.join(STYLES)}")
    n, hq, d = heads_view(dq, head_dim, "rope_back dq")
    nk, hk, dk_ = heads_view(dk, head_dim, "rope_back dk")
    if nk != n or dk_ != d:
        raise VkharpError(f"rope_back: dq {dq.shape} and dk {dk.shape} differ in tokens or head_dim")
    rot = check_table(inv_freq, layer, d, q_scale, "rope_back")
    check_step(step, "rope_back")
    consts = {"WG": wg, "N": n, "HQ": hq, "HK": hk, "D": d, "ROT": rot, "DUAL": 0}
    if q_scale != 1.0:
        consts["QSCALE"] = float(q_scale)
    rec.dispatch(STYLES[style] + "_inverse", [dq, dk, inv_freq, step],
                 grid1d(rec.device, n * (hq + hk) * (rot // 2), wg), consts, {"layer": layer})
