"""Launcher for shaders/adamw.comp: one AdamW step on the device, replayable without re-recording.

kp fixes push and specialization constants when a program is recorded, so the step's
hyperparameters (which change every step: the bias corrections, a clipping factor, a schedule's
learning rate) live in a host-written "param" buffer that the shader reads: write
`pack_hyper(...)` into it before each replay.

Threshold (seed idea 5, "skip weight updates whose gradient is below a threshold, against drift"):
an element whose |grad_scale * grad| < threshold is left entirely unchanged -- its parameter, and
its first and second moments, which are neither decayed nor fed a zero. The element sits the step
out, as if its gradient had not been computed, so a parameter that rarely clears the threshold does
not have its moments shrink towards zero (which would make its next update larger, not smaller)
and is not pulled towards zero by weight decay while it is frozen. The bias corrections use the
global step. threshold = 0 is plain AdamW (torch.optim.AdamW's order of operations).
`counts` (u32) receives [elements updated, elements seen] per slot, added atomically: zero it with
`zero_counts` and read it after the step for the fraction updated.
"""
from __future__ import annotations

import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError
from ..hyper import HYPER_FIELDS, HYPER_WORDS, pack_hyper
from .elementwise import fill_u32

__all__ = ["HYPER_FIELDS", "HYPER_WORDS", "pack_hyper", "adamw", "zero_counts"]


def adamw(rec: Recorder, param: Buffer, grad: Buffer, m: Buffer, v: Buffer, hyper: Buffer, counts: Buffer,
          *, slot: int = 0, wg: int = 64, per_lane: int = 32):
    """One AdamW step over f32 buffers of equal size (module doc), hyperparameters from `hyper`
    (pack_hyper's layout), [updated, seen] added to counts[2*slot : 2*slot + 2]. Steps of several
    parameters adding to the same slot are ordered by barriers; distinct slots let them share one."""
    for b, what in ((param, "param"), (grad, "grad"), (m, "m"), (v, "v"), (hyper, "hyper")):
        if b.dtype != np.float32:
            raise VkharpError(f"adamw: {what} buffer {b.name!r} must be f32, got {b.dtype}")
    if not (param.size == grad.size == m.size == v.size):
        raise VkharpError(f"adamw: param, grad, m, v must have one size; got {param.size}, {grad.size}, "
                          f"{m.size}, {v.size}")
    if len({id(param), id(grad), id(m), id(v)}) != 4:
        raise VkharpError("adamw: param, grad, m and v must be four different buffers")
    if hyper.size < HYPER_WORDS:
        raise VkharpError(f"adamw: hyper holds {hyper.size} words; pack_hyper writes {HYPER_WORDS}")
    if hyper.kind != "param":
        raise VkharpError(f"adamw: hyper ({hyper.name!r}) must be a 'param' buffer the host writes before each "
                          f"replay, got kind {hyper.kind!r}")
    if counts.dtype != np.uint32 or counts.size < 2 * (slot + 1) or slot < 0:
        raise VkharpError(f"adamw: counts must be u32 with at least {2 * (slot + 1)} words for slot {slot}, "
                          f"got {counts!r}")
    if wg < 1 or per_lane < 1:
        raise VkharpError(f"adamw: wg and per_lane must be positive, got {wg}, {per_lane}")
    ept = max(1, min(per_lane, -(-param.size // wg)))
    rec.dispatch("adamw", [param, grad, m, v, hyper, counts], grid1d(rec.device, param.size, wg * ept),
                 {"WG": wg, "N": param.size, "SLOT": slot, "EPT": ept})


def zero_counts(rec: Recorder, counts: Buffer):
    """counts = 0 (before the steps whose fraction updated the host reads)."""
    if counts.dtype != np.uint32:
        raise VkharpError(f"zero_counts: counts ({counts.name!r}) must be u32, got {counts.dtype}")
    fill_u32(rec, counts, value=0)
