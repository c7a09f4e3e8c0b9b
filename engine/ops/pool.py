"""Launcher for shaders/pool_sum.comp (mean pooling of sentence vectors, engine/embed/)."""
from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError


def pool_sum(rec: Recorder, acc: Buffer, x: Buffer, step: Buffer, *, wg: int = 64):
    """acc += the sum of x's first n_tokens rows; the chunk at position 0 starts acc from zero
    (pos and n_tokens read from the step buffer at replay)."""
    dim = x.shape[-1]
    if acc.size != dim:
        raise VkharpError(f"pool_sum: acc has {acc.size} elements, rows of x have {dim}")
    rec.dispatch("pool_sum", [acc, x, step], grid1d(rec.device, dim, wg),
                 {"WG": wg, "DIM": dim, "ROWS": x.size // dim})
