"""Launchers for row selection (shaders/select_row.comp)."""
from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError


def select_row(rec: Recorder, out: Buffer, x: Buffer, step: Buffer, *, wg: int = 64):
    """out = x[n_tokens - 1]: the last valid row of a chunk (n_tokens read from the step buffer at replay)."""
    dim = x.shape[-1]
    if out.size != dim:
        raise VkharpError(f"select_row: out has {out.size} elements, rows of x have {dim}")
    rec.dispatch("select_row", [out, x, step], grid1d(rec.device, dim, wg),
                 {"WG": wg, "DIM": dim, "ROWS": x.size // dim})
