"""Launchers for shaders/copy_rows.comp: moving rows between the training graph's buffers."""
import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError


def _f32(op: str, *bufs: Buffer):
    for b in bufs:
        if b.dtype != np.float32:
            raise VkharpError(f"{op}: buffer {b.name!r} must be f32, got {b.dtype}")


def copy_block(rec: Recorder, out: Buffer, x: Buffer, n: int, *, src: int = 0, dst: int = 0,
               accumulate: bool = False, words: bool = False, wg: int = 256):
    """out[dst + i] (+)= x[src + i] for i < n (offsets in floats, fixed at record time).
    words=True: x may be a u32 buffer holding f32 values (how an f32 weight is stored), copied into
    an f32 `out` as they are (a plain copy, no arithmetic)."""
    _f32("copy_block", out, *(() if words and not accumulate else (x,)))
    if words and x.dtype.itemsize != 4:
        raise VkharpError(f"copy_block: {x.name!r} must hold 32-bit words, got {x.dtype}")
    if n < 1 or src < 0 or dst < 0 or src + n > x.size or dst + n > out.size:
        raise VkharpError(f"copy_block: {n} floats from {src} of {x.name!r} ({x.size}) to {dst} of "
                          f"{out.name!r} ({out.size}) do not fit")
    rec.dispatch("copy_block_acc" if accumulate else "copy_block", [out, x], grid1d(rec.device, n, wg),
                 {"WG": wg, "N": n}, {"src": src, "dst": dst})


def _rows(op: str, idx: Buffer, dim: int, *bufs: Buffer):
    _f32(op, *bufs)
    if idx.dtype != np.uint32:
        raise VkharpError(f"{op}: the index buffer {idx.name!r} must be u32, got {idx.dtype}")
    if dim < 1 or any(b.size % dim for b in bufs):
        raise VkharpError(f"{op}: buffers {[b.shape for b in bufs]} are not whole rows of {dim}")


def gather_rows(rec: Recorder, out: Buffer, x: Buffer, idx: Buffer, *, wg: int = 64):
    """out[i] = x[idx[i]] (rows of x.shape[-1] floats); an index past x's rows gives a zero row."""
    dim = x.shape[-1]
    _rows("gather_rows", idx, dim, out, x)
    if out.size != idx.size * dim:
        raise VkharpError(f"gather_rows: out {out.shape} must hold {idx.size} rows of {dim}")
    rec.dispatch("gather_rows", [out, x, idx], grid1d(rec.device, idx.size * dim, wg),
                 {"WG": wg, "NIDX": idx.size, "DIM": dim, "ROWS": x.size // dim})


def scatter_rows(rec: Recorder, out: Buffer, x: Buffer, idx: Buffer, *, wg: int = 64):
    """out[idx[i]] += x[i] for every index inside out's rows (the gather's backward). The valid
    indices must be distinct (the host writes them: engine/tune/)."""
    dim = out.shape[-1]
    _rows("scatter_rows", idx, dim, out, x)
    if x.size != idx.size * dim:
        raise VkharpError(f"scatter_rows: x {x.shape} must hold {idx.size} rows of {dim}")
    rec.dispatch("scatter_rows", [out, x, idx], grid1d(rec.device, idx.size * dim, wg),
                 {"WG": wg, "NIDX": idx.size, "DIM": dim, "ROWS": out.size // dim})
