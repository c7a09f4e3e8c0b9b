"""Launcher for shaders/embed_back.comp: the embedding gather's backward (a model trained from scratch)."""
import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError
from .elementwise import fill_u32


def embed_back(rec: Recorder, dtable: Buffer, ids: Buffer, dx: Buffer, *, scale: float = 1.0,
               accumulate: bool = False, wg: int = 64):
    """dtable f32[V, H] (+)= scale * sum over the tokens n with ids[n] = v of dx[n], in token order by the
    group of each id's first occurrence (deterministic). accumulate=True adds (a tied head's gradient
    already there); otherwise the table is zeroed first (a second dispatch). Ids >= V are skipped."""
    if ids.dtype != np.uint32:
        raise VkharpError(f"embed_back: ids ({ids.name!r}) must be a u32 buffer, got {ids.dtype}")
    if dtable.dtype != np.float32 or dx.dtype != np.float32 or len(dtable.shape) != 2:
        raise VkharpError(f"embed_back: dtable {dtable.shape} must be f32 [vocab, hidden] and dx f32")
    vocab, cols = dtable.shape
    if dx.size != ids.size * cols:
        raise VkharpError(f"embed_back: dx {dx.shape} must be [{ids.size}, {cols}] for {ids.size} ids")
    if not np.isfinite(scale):
        raise VkharpError(f"embed_back: scale must be finite, got {scale}")
    consts = {"WG": wg, "COLS": cols, "NTOK": ids.size, "V": vocab, "SCALE": float(scale)}
    link = _links(rec, ids.size)
    with rec.parallel():
        if not accumulate:   # 0.0f is all-zero bits: the u32 fill zeroes f32 buffers too
            fill_u32(rec, dtable, value=0)
        rec.dispatch("embed_back_links", [link, ids], grid1d(rec.device, ids.size, wg), consts)
    rec.dispatch("embed_back", [dtable, ids, dx, link], grid1d(rec.device, ids.size * -(-cols // wg), 1), consts)


def _links(rec: Recorder, n: int) -> Buffer:
    """Scratch u32[n]: each token's next occurrence (shared per device and size; the recorder orders reuse)."""
    cache = rec.device.__dict__.setdefault("_embed_back_links", {})
    if n not in cache:
        cache[n] = rec.device.buffer((n,), np.uint32, "act", name=f"embed_back.links[{n}]")
    return cache[n]
