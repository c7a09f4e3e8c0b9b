"""Twin of shaders/embed.comp, in float32: the shader's value is one rounded product
(decoded weight * scale), which float32 here reproduces exactly."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import rng
from ..params import STEP_FIELDS, pack_step
from ..quant import Packed, dequantize


def embed(table: Packed, ids, step=None, *, scale: float = 1.0, dropout: bool = False, dual: bool = False) -> np.ndarray:
    """float32 [len(ids), cols]; ids >= vocab give zero rows. `step` is the step buffer's words
    (engine.params.pack_step) or a dict of its fields; read only when dropout=True. dual=True: two
    rows at position pos, only row 1 masked (HARP's two streams)."""
    ids = np.asarray(ids, dtype=np.uint32).reshape(-1)
    out = np.zeros((ids.size, table.cols), dtype=np.float32)
    ok = ids < table.rows
    rows = ids[ok].astype(np.int64)
    if rows.size:
        sub = Packed(table.format, rows.size, table.cols, table.qs[rows],
                     None if table.scales is None else table.scales[rows])
        out[ok] = dequantize(sub) * np.float32(scale)
    if dropout:
        words = pack_step(**step) if isinstance(step, Mapping) else np.asarray(step, dtype=np.uint32)
        if words[STEP_FIELDS["drop_on"]] == 1:
            p = words[STEP_FIELDS["drop_p"]:STEP_FIELDS["drop_p"] + 1].view(np.float32)[0]
            seed, pos = int(words[STEP_FIELDS["seed"]]), int(words[STEP_FIELDS["pos"]])
            if dual:
                out[1:][rng.dropout_mask(seed, pos, 1, table.cols, p)[[0] * (ids.size - 1)]] = 0.0
            else:
                out[rng.dropout_mask(seed, pos, ids.size, table.cols, p)] = 0.0
    return out
