"""Weight matrices on the device, split by rows into parts that each fit one storage buffer.

A part is uploaded, then its host arrays may be dropped: uploading a model needs one part of extra
host memory at a time. Kernels that read weights are dispatched once per part, each writing its
own rows of the output (disjoint writes, so parts need no synchronisation between them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .device import Buffer, Device
from .errors import DeviceLimitError
from .quant import Packed


@dataclass
class WeightPart:
    row0: int
    rows: int
    qs: Buffer
    scales: Buffer | None


@dataclass
class DeviceWeight:
    format: str
    rows: int
    cols: int
    parts: list[WeightPart]
    name: str = ""

    @property
    def nbytes(self) -> int:
        return sum(p.qs.nbytes + (p.scales.nbytes if p.scales is not None else 0) for p in self.parts)


def rows_per_part(packed: Packed, max_bytes: int) -> int:
    """Most rows whose quants and scales each fit in max_bytes (scale pairs may add one word)."""
    q_row = packed.qs.shape[1] * 4
    s_row = 0 if packed.scales is None else packed.scales.shape[1] * packed.scales.itemsize
    n = max_bytes // q_row
    if s_row:
        n = min(n, (max_bytes - 4) // s_row)
    if n < 1:
        raise DeviceLimitError(f"one row of this {packed.format} matrix ({q_row} bytes) does not fit in a "
                               f"{max_bytes}-byte storage buffer")
    return int(n)


def upload_weight(device: Device, packed: Packed, name: str = "", max_bytes: int | None = None) -> DeviceWeight:
    per = rows_per_part(packed, max_bytes or device.max_buffer_bytes)
    parts = []
    for r0 in range(0, packed.rows, per):
        sub = packed.rows_slice(r0, min(packed.rows, r0 + per))
        qs = device.upload(np.ascontiguousarray(sub.qs), f"{name}.qs[{r0}]")
        sw = sub.scale_words()
        sc = device.upload(sw, f"{name}.scales[{r0}]") if sw is not None else None
        parts.append(WeightPart(r0, sub.rows, qs, sc))
    return DeviceWeight(packed.format, packed.rows, packed.cols, parts, name)
