"""Launcher for shaders/loss.comp: the sources' losses and dL/dlogits (rules: engine.reference.loss)."""
import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError
from ..reference.loss import DEFAULT_HOLD, DEFAULT_MARGIN, DEFAULT_RULE, RULES, STAT_WORDS, check_hold, rule_id

ROW_WORDS = 12     # the shader's per-row record (RW)


def default_wg(device) -> int:
    """256 on GPUs, 64 on CPU devices (as the sampler: lavapipe runs a group on one core)."""
    limit = min(device.info.max_workgroup_invocations, device.info.max_workgroup_size[0])
    return min(64 if device.info.type == "cpu" else 256, 1 << (limit.bit_length() - 1))


def loss(rec: Recorder, dlogits: Buffer, stats: Buffer, logits: Buffer, targets: Buffer, weights: Buffer, *,
         rule: str = DEFAULT_RULE, base: Buffer | None = None, edits: Buffer | None = None,
         margin: float = DEFAULT_MARGIN, hold: float = DEFAULT_HOLD, rows: int | None = None,
         work: Buffer | None = None, wg: int | None = None) -> Buffer:
    """Record loss + gradient: dlogits f32[T, V] = dL/dlogits and stats u32[STAT_WORDS (+ T)].

    logits f32[T, V] (row t predicts answer token t), targets u32[T], weights f32[T] (>= 0; 0 masks
    a row). position-edit also takes base f32[T, V] (the untuned model's logits on the same rows)
    and edits u32[T] (the wrong token at an edited row, EDIT_NONE / EDIT_ARGMAX: see the rule table
    in engine/reference/loss.py; an id >= V counts as EDIT_NONE). When stats holds STAT_WORDS + T
    words, the per-row predictions follow the header (engine.reference.loss.unpack_stats).
    hold: logits the target must lead every other token by for its row to count as predicted (the
    mismatch count, first-mismatch's row and mismatch-only's rows; 0: the argmax alone decides).
    rows: use only the first `rows` rows (the buffers may then hold more, e.g. a whole sequence's
    logits of which a shorter answer uses the start).
    work: u32[T * ROW_WORDS] row records ('act' or 'store'), allocated here when not given; returned.
    """
    rid = rule_id(rule)
    hold = check_hold(hold)
    if len(logits.shape) != 2:
        raise VkharpError(f"loss: logits ({logits.name!r}) must have shape [T, V], got {logits.shape}")
    T, V = logits.shape
    exact = rows is None
    if rows is not None:
        if int(rows) != rows or not 1 <= rows <= T:
            raise VkharpError(f"loss: rows must be an integer in [1, {T}] (the logits' rows), got {rows!r}")
        T = int(rows)
    if T * V >= 2**32:
        raise VkharpError(f"loss: T * V = {T * V} must stay below 2^32; pass fewer rows at a time")
    checks = [("dlogits", dlogits, np.float32, T * V), ("logits", logits, np.float32, T * V),
              ("targets", targets, np.uint32, T), ("weights", weights, np.float32, T),
              ("stats", stats, np.uint32, None)]
    if rid == RULES["position-edit"]:
        if base is None or edits is None:
            raise VkharpError("loss: position-edit needs base= (the untuned model's logits, f32[T, V]) and "
                              "edits= (u32[T], the wrong token per edited row)")
        checks += [("base", base, np.float32, T * V), ("edits", edits, np.uint32, T)]
    for name, b, dtype, size in checks:
        if b.dtype != dtype:
            raise VkharpError(f"loss: {name} ({b.name!r}) must be {np.dtype(dtype).name}, got {b.dtype}")
        if size is not None and (b.size != size if exact else b.size < size):
            raise VkharpError(f"loss: {name} ({b.name!r}) holds {b.size} elements; logits {logits.shape} need {size}")
    if stats.size not in (STAT_WORDS, STAT_WORDS + T):
        raise VkharpError(f"loss: stats ({stats.name!r}) must hold {STAT_WORDS} words, or {STAT_WORDS + T} "
                          f"with the per-row predictions; it holds {stats.size}")
    if not np.isfinite(margin) or margin < 0:
        raise VkharpError(f"loss: margin must be a finite number >= 0, got {margin}")
    dev = rec.device
    wg = default_wg(dev) if wg is None else wg
    if wg < 1 or wg & (wg - 1) or wg > dev.info.max_workgroup_invocations:
        raise VkharpError(f"loss: wg must be a power of two <= {dev.info.max_workgroup_invocations}, got {wg}")
    if work is None:
        work = dev.buffer(T * ROW_WORDS, np.uint32, "act", name="loss_rows")
    elif work.dtype != np.uint32 or work.size != T * ROW_WORDS or work.kind not in ("act", "store"):
        raise VkharpError(f"loss: work ({work.name!r}) must be a u32 'act' or 'store' buffer of {T * ROW_WORDS} words")
    consts = {"WG": wg, "T": T, "V": V, "RULE": rid, "MARGIN": float(margin), "HOLD": hold, "PRED": int(stats.size > STAT_WORDS)}
    b = base if base is not None else logits          # bound but unread by the other rules
    ed = edits if edits is not None else targets
    rec.dispatch("loss_rows", [work, logits, b, targets, ed], grid1d(dev, T, 1), consts)
    rec.dispatch("loss_reduce", [stats, work, targets, weights], (1, 1, 1), consts)
    rec.dispatch("loss_grad", [dlogits, logits, b, work, stats, targets, weights], grid1d(dev, T * V, wg), consts)
    return work
