"""Launcher for shaders/embed.comp: token ids -> embedding rows, with HARP's optional dropout mask."""
from __future__ import annotations

import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError
from ..params import STEP_WORDS
from ..quant import FORMATS
from ..weights import DeviceWeight


def embed(rec: Recorder, out: Buffer, table: DeviceWeight, ids: Buffer, step: Buffer | None = None, *,
          scale: float = 1.0, dropout: bool = False, dual: bool = False, wg: int = 256):
    """out[t, :] = table[ids[t], :] * scale for the chunk's tokens (Gemma: scale = sqrt(hidden)).

    `table` in any weight format and split into any number of row parts: one dispatch per part,
    each writing only the tokens whose ids fall in its rows (the last part also writes zeros for ids
    >= vocab, which are never read out of bounds). With `dropout=True` the variant that reads the
    step buffer is recorded: when step's drop_on is 1, element (t, d) is zeroed where
    rng.uniform(seed, pos + t, d) < drop_p (HARP reframing, no rescale); the plain variant does not
    bind `step` at all, so `step` may be None then. All ids.size tokens are gathered on every replay
    (step's n_tokens is not read): rows past the valid tokens cost a little and read in bounds.
    dual=True (with dropout, HARP cached mode): two rows of one token at position P_POS, only row 1
    reframed.
    """
    if table.format not in FORMATS:
        raise VkharpError(f"embed: unknown table format {table.format!r}")
    if ids.dtype != np.uint32:
        raise VkharpError(f"embed: ids ({ids.name!r}) must be a u32 buffer, got {ids.dtype}")
    n_tok, cols = ids.size, table.cols
    if out.dtype != np.float32 or out.size != n_tok * cols or (len(out.shape) > 1 and out.shape[-1] != cols):
        raise VkharpError(f"embed: out {out.shape} ({out.dtype}) must be f32 [{n_tok}, {cols}] "
                          f"for {n_tok} ids and a table of width {cols}")
    if not np.isfinite(scale):
        raise VkharpError(f"embed: scale must be finite, got {scale}")
    if not table.parts or table.parts[-1].row0 + table.parts[-1].rows != table.rows:
        raise VkharpError(f"embed: table {table.name!r} parts do not cover its {table.rows} rows")
    extra = []
    if dual and (not dropout or n_tok != 2):
        raise VkharpError(f"embed: dual=True needs dropout=True and 2 ids, got dropout={dropout} and {n_tok} ids")
    if dropout:
        if step is None or step.dtype != np.uint32 or step.size < STEP_WORDS:
            raise VkharpError(f"embed: dropout=True needs the step buffer (u32, at least {STEP_WORDS} words), "
                              f"got {step!r}")
        extra = [step]
    variant = f"embed_{table.format}" + ("_drop" if dropout else "")
    groups = grid1d(rec.device, n_tok * -(-cols // wg), 1)
    last = len(table.parts) - 1

    def record(i, part):
        bufs = [out, ids, part.qs] + ([part.scales] if part.scales is not None else []) + extra
        rec.dispatch(variant, bufs, groups, {"WG": wg, "COLS": cols, "NTOK": n_tok, "ROW0": part.row0,
                                             "PROWS": part.rows, "LAST": int(i == last), "SCALE": scale,
                                             "DUAL": int(dual)})

    if len(table.parts) == 1:
        record(0, table.parts[0])
    else:
        with rec.parallel():  # disjoint writes: each token belongs to exactly one part
            for i, part in enumerate(table.parts):
                record(i, part)
