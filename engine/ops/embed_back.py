"""Launcher for shaders/embed_back.comp: the embedding gather's backward (a model trained from scratch)."""
import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError


def embed_back(rec: Recorder, dtable: Buffer, ids: Buffer, dx: Buffer, *, scale: float = 1.0,
               accumulate: bool = False, wg: int = 64):
    """dtable f32[V, H] (+)= scale * sum over the tokens n with ids[n] = v of dx[n]: one group per
    (row, column block) walks the ids in order (deterministic). accumulate=True adds (a tied head's
    gradient already there). Ids >= V are skipped."""
    if ids.dtype != np.uint32:
        raise VkharpError(f"embed_back: ids ({ids.name!r}) must be a u32 buffer, got {ids.dtype}")
    if dtable.dtype != np.float32 or dx.dtype != np.float32 or len(dtable.shape) != 2:
        raise VkharpError(f"embed_back: dtable {dtable.shape} must be f32 [vocab, hidden] and dx f32")
    vocab, cols = dtable.shape
    if dx.size != ids.size * cols:
        raise VkharpError(f"embed_back: dx {dx.shape} must be [{ids.size}, {cols}] for {ids.size} ids")
    if not np.isfinite(scale):
        raise VkharpError(f"embed_back: scale must be finite, got {scale}")
    groups = vocab * -(-cols // wg)
    rec.dispatch("embed_back" + ("_acc" if accumulate else ""), [dtable, ids, dx], grid1d(rec.device, groups, 1),
                 {"WG": wg, "COLS": cols, "NTOK": ids.size, "V": vocab, "SCALE": float(scale)})
