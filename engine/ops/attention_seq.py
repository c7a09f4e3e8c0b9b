"""Launchers for shaders/attention_seq.comp: causal attention over one sequence (training) and its
backward. No KV cache: the T tokens are at positions 0..T-1; q, k arrive rotated."""
from __future__ import annotations

import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import DeviceLimitError, VkharpError


def _check(what: str, q: Buffer, k: Buffer, v: Buffer, n_heads: int, n_kv_heads: int, head_dim: int,
           window: int, softcap: float, **more: Buffer) -> int:
    """Tokens T of the sequence, after checking every buffer's size against [T, H, D]."""
    if n_heads <= 0 or n_kv_heads <= 0 or n_heads % n_kv_heads:
        raise VkharpError(f"{what}: n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}")
    if head_dim <= 0 or window < 0 or not (np.isfinite(softcap) and softcap >= 0):
        raise VkharpError(f"{what}: head_dim {head_dim} must be positive, window {window} >= 0, softcap {softcap} >= 0")
    if q.size % (n_heads * head_dim):
        raise VkharpError(f"{what}: q {q.shape} is not [tokens, {n_heads}, {head_dim}]")
    t = q.size // (n_heads * head_dim)
    want = {"k": (k, n_kv_heads * head_dim), "v": (v, n_kv_heads * head_dim)}
    for name, b in more.items():
        want[name] = (b, (n_heads if name in ("lse", "delta") else
                          n_kv_heads * head_dim if name in ("dk", "dv") else n_heads * head_dim))
    for name, (b, row) in {"q": (q, n_heads * head_dim), **want}.items():
        if b.dtype != np.float32 or b.size != t * row:
            raise VkharpError(f"{what}: {name} {b.shape} ({b.dtype}) must be f32 with {t} rows of {row}")
    return t


MAX_TILE = 32   # rows per shared-memory tile (two tiles of rows in shared memory; fewer for wide heads)
# Threads (rows) per group: 64 on CPU drivers (each staged tile serves more rows; T = 512, SmolLM2's heads:
# 170 ms forward, 400 ms backward on lavapipe against 230 and 570 with 32), 32 elsewhere (more groups
# to fill a GPU: 512 tokens of 9/3 heads are only 72 groups of 64).
WG_CPU, WG_GPU = 64, 32


def _wg(rec: Recorder, wg: int | None) -> int:
    return wg if wg is not None else WG_CPU if rec.device.info.type == "cpu" else WG_GPU


def _consts(rec: Recorder, what: str, t, n_heads, n_kv_heads, head_dim, scale, window, softcap, wg, tile):
    """Specialization constants; the tile is the largest power of two <= MAX_TILE whose two tiles of rows
    (plus two floats a row) fit the device's shared memory."""
    if head_dim % 4:
        raise VkharpError(f"{what}: head_dim {head_dim} must be a multiple of 4 (rows are read as vec4)")
    if wg <= 0 or wg > rec.device.info.max_workgroup_invocations:
        raise DeviceLimitError(f"{what}: work-group size {wg} is not in 1..{rec.device.info.max_workgroup_invocations}")
    tk = tile or MAX_TILE
    while tk > 1 and tk * (8 * head_dim + 8) > rec.device.info.max_shared_memory:
        tk //= 2
    if tk * (8 * head_dim + 8) > rec.device.info.max_shared_memory:
        raise DeviceLimitError(f"{what}: head_dim {head_dim} needs {8 * head_dim + 8} bytes of shared memory per "
                               f"row; the device has {rec.device.info.max_shared_memory}")
    return {"WG": wg, "N": t, "HQ": n_heads, "HK": n_kv_heads, "D": head_dim, "SCALE": float(scale),
            "WINDOW": int(window), "SOFTCAP": float(softcap), "TK": tk}


def _row_groups(t: int, n_heads: int, n_kv_heads: int, wg: int) -> int:
    return n_kv_heads * -(-(t * (n_heads // n_kv_heads)) // wg)


def attention_seq(rec: Recorder, out: Buffer, lse: Buffer, q: Buffer, k: Buffer, v: Buffer, *, n_heads: int,
                  n_kv_heads: int, head_dim: int, scale: float, window: int = 0, softcap: float = 0.0,
                  wg: int | None = None, tile: int | None = None):
    """out f32[T, HQ, D] = causal softmax attention of q f32[T, HQ, D] over k, v f32[T, HK, D] (GQA;
    window > 0: key j visible to query i iff i - window < j <= i; softcap: Gemma 2's score capping), the
    values the inference attention computes; lse f32[T, HQ] = each row's log-sum-exp, for the backward.
    tile: rows staged in shared memory at a time (default: the most that fit, up to MAX_TILE)."""
    t = _check("attention_seq", q, k, v, n_heads, n_kv_heads, head_dim, window, softcap, out=out, lse=lse)
    wg = _wg(rec, wg)
    consts = _consts(rec, "attention_seq", t, n_heads, n_kv_heads, head_dim, scale, window, softcap, wg, tile)
    rec.dispatch("attention_seq", [out, lse, q, k, v], grid1d(rec.device, _row_groups(t, n_heads, n_kv_heads, wg), 1),
                 consts)


def _delta(rec: Recorder, t: int, n_heads: int) -> Buffer:
    cache = rec.device.__dict__.setdefault("_attention_back_delta", {})
    key = t * n_heads
    if key not in cache:
        cache[key] = rec.device.buffer((t, n_heads), np.float32, "act", name=f"attention_back.delta[{t}x{n_heads}]")
    return cache[key]


def attention_back(rec: Recorder, dq: Buffer, dk: Buffer, dv: Buffer, q: Buffer, k: Buffer, v: Buffer, out: Buffer,
                   lse: Buffer, dout: Buffer, *, n_heads: int, n_kv_heads: int, head_dim: int, scale: float,
                   window: int = 0, softcap: float = 0.0, delta: Buffer | None = None, wg: int | None = None,
                   tile: int | None = None):
    """dq, dk, dv (written, not added) of attention_seq, from its out and lse and the gradient dout:
    a dispatch with a thread per query row and head for dq (which also writes delta_i = dout_i . out_i),
    then one with a thread per key row and kv head for dk, dv (summed over its query heads). No float atomics.
    delta: scratch f32[T, HQ] (default: one shared per device and size)."""
    t = _check("attention_back", q, k, v, n_heads, n_kv_heads, head_dim, window, softcap, dq=dq, dk=dk, dv=dv,
               out=out, lse=lse, dout=dout)
    delta = delta if delta is not None else _delta(rec, t, n_heads)
    if delta.dtype != np.float32 or delta.size != t * n_heads:
        raise VkharpError(f"attention_back: delta {delta.shape} must be f32[{t}, {n_heads}]")
    wg = _wg(rec, wg)
    consts = _consts(rec, "attention_back", t, n_heads, n_kv_heads, head_dim, scale, window, softcap, wg, tile)
    rec.dispatch("attention_back_dq", [dq, delta, q, k, v, out, lse, dout],
                 grid1d(rec.device, _row_groups(t, n_heads, n_kv_heads, wg), 1), consts)
    rec.dispatch("attention_back_dkv", [dk, dv, delta, q, k, v, lse, dout],
                 grid1d(rec.device, n_kv_heads * -(-t // wg), 1), consts)
