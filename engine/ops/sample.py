"""Launcher for shaders/sample.comp: one work-group turns the logits into a sampled token.

Per-step values (settings, u, banned ids, the ring's count and head) come from `params`, packed by
engine.sampling.pack_sample_params and written before each replay (a "param" buffer the shader
reads directly, or an act buffer the program uploads), so one recorded program samples every step.
"""
import numpy as np

from ..device import Buffer, Recorder
from ..errors import DeviceLimitError, VkharpError
from ..sampling import OUT_WORDS, SP_WORDS

SMALL_SHARED = 64          # bytes of shared memory besides the three CAP-word regions
MIN_CAP = 1024


def _pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _pow2_at_least(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def default_wg(device) -> int:
    """1024 invocations on GPUs; 64 on CPU devices (lavapipe runs a work-group on one core, 8 lanes
    wide, where more invocations only make each barrier dearer: 0.12 µs at 64, 0.47 µs at 256)."""
    info = device.info
    limit = min(info.max_workgroup_invocations, info.max_workgroup_size[0])
    want = 64 if info.type == "cpu" else 1024
    wg = 1
    while wg * 2 <= min(want, limit):
        wg *= 2
    return wg


def list_capacity(device, wg: int, ring: int) -> int:
    """Largest power-of-two candidate list (≥ 2·WG, ≥ 2·(ring + 8), ≥ 1024 when it fits) the shared memory
    holds (three regions of CAP words; the override list and its saved logits share one)."""
    cap = _pow2_at_least(max(2 * wg, MIN_CAP, 2 * (ring + 8)))
    limit = device.info.max_shared_memory
    while 12 * cap * 2 + SMALL_SHARED <= limit and cap < 4096:
        cap *= 2
    if 12 * cap + SMALL_SHARED > limit:
        raise DeviceLimitError(f"sample: a work-group of {wg} with a ring of {ring} tokens needs "
                               f"{12 * cap + SMALL_SHARED} bytes of shared memory; {device.info.name} has {limit}. "
                               f"Use a smaller wg or ring.")
    return cap


def sample(rec: Recorder, out: Buffer, logits: Buffer, params: Buffer, recent: Buffer, *, vocab: int,
           work: Buffer | None = None, wg: int | None = None, cap: int | None = None) -> Buffer:
    """Record the sampling stage: out[OUT_WORDS] (u32) from logits[:vocab] (f32).

    logits: an 'act' buffer. The shader replaces the few banned / penalised logits in place while it
    runs and puts the originals back before it ends (so its binding is read-write: a later dispatch
    reading the logits in the same program gets a barrier).
    recent: u32 ring of recent tokens (its size is the ring capacity; any size ≥ 1 when unused).
    work: f32 scratch of 4·ceil(vocab/4) elements ('act'), allocated here when not given.
    Returns the work buffer (keep it if the program outlives this call's caller frame).
    """
    dev = rec.device
    if not isinstance(vocab, (int, np.integer)) or not 1 <= vocab < 2**30:
        raise VkharpError(f"sample: vocab must be an integer in [1, 2^30), got {vocab!r}")
    for name, buf, dtype, size in (("out", out, np.uint32, OUT_WORDS), ("params", params, np.uint32, SP_WORDS),
                                   ("logits", logits, np.float32, vocab), ("recent", recent, np.uint32, 1)):
        if buf.dtype != dtype:
            raise VkharpError(f"sample: {name} ({buf.name!r}) must be {np.dtype(dtype).name}, got {buf.dtype}")
        if buf.size < size:
            raise VkharpError(f"sample: {name} ({buf.name!r}) holds {buf.size} elements, needs at least {size}")
    for name, buf in (("out", out), ("logits", logits)):
        if buf.kind != "act":
            raise VkharpError(f"sample: {name} ({buf.name!r}) must be an 'act' buffer, got kind {buf.kind!r}")
    ring = recent.size
    if wg is None:
        wg = default_wg(dev)
        while wg > 32 and 12 * _pow2_at_least(max(2 * wg, MIN_CAP, 2 * (ring + 8))) + SMALL_SHARED > dev.info.max_shared_memory:
            wg //= 2                                    # a small shared memory: fewer invocations, shorter list
    limit = min(dev.info.max_workgroup_invocations, dev.info.max_workgroup_size[0])
    if not _pow2(wg) or wg > limit:
        raise VkharpError(f"sample: wg must be a power of two ≤ {limit} (device limit), got {wg}")
    if cap is None:
        cap = list_capacity(dev, wg, ring)
    elif not _pow2(cap) or cap < 2 * wg or cap < 2 * (ring + 8) or 12 * cap + SMALL_SHARED > dev.info.max_shared_memory:
        raise VkharpError(f"sample: cap must be a power of two ≥ 2·wg ({2 * wg}) and ≥ 2·(ring + 8) ({2 * ring + 16}) whose "
                          f"12·cap bytes fit the shared memory ({dev.info.max_shared_memory}), got {cap}")
    n_work = 4 * ((vocab + 3) // 4)
    if work is None:
        work = dev.buffer(n_work, np.float32, "act", name="sample_work")
    elif work.dtype != np.float32 or work.size < n_work or work.kind != "act":
        raise VkharpError(f"sample: work ({work.name!r}) must be an f32 'act' buffer of ≥ {n_work} elements")
    rec.dispatch("sample", [out, logits, logits, params, recent, work], (1, 1, 1),
                 {"WG": wg, "V": vocab, "RW": ring, "CAP": cap})
    return work
