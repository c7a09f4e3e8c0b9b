"""Weight matrices on the device: split by rows into buffers that fit, and stacked by layer.

Stacking: the same matrix of every layer (all q_proj, all gate_proj, ...) lives in as few buffers
as possible, layer after layer along the rows, so that one pipeline serves every layer: the kernel
reads its layer's rows at an offset given per dispatch (a push constant). Creating pipelines is the
slow part of loading a model (each compiles its shader), so this keeps that cost independent of depth.

Splitting: a part is one quants buffer (+ one scales buffer) within the device's storage-buffer
limit. Whole layers are grouped into parts when a layer fits; otherwise each layer is split by rows
into parts of the same shape. Kernels are dispatched once per part of a layer, each writing its own
rows of the output (disjoint writes: no synchronisation between them).

Upload needs one part of extra host memory at a time: parts are assembled, uploaded and dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .device import Buffer, Device
from .errors import DeviceLimitError, VkharpError
from . import quant
from .quant import Packed


@dataclass
class WeightPart:
    row0: int          # first output row this part produces
    rows: int          # output rows it produces (per layer)
    qs: Buffer
    scales: Buffer | None
    layer0: int = 0    # first layer it holds; layer l's rows start at row (l - layer0) * rows of the buffer
    layers: int = 1
    format: str = ""   # its weight format (mixed-precision checkpoints differ from layer to layer)


@dataclass
class DeviceWeight:
    format: str
    rows: int          # rows of one layer's matrix
    cols: int
    parts: list[WeightPart]
    name: str = ""
    layers: int = 1

    @property
    def nbytes(self) -> int:
        return sum(p.qs.nbytes + (p.scales.nbytes if p.scales is not None else 0) for p in self.parts)

    def parts_for(self, layer: int) -> list[tuple[WeightPart, int]]:
        """(part, first buffer row of this layer in it) for every part holding `layer`'s rows."""
        if not 0 <= layer < self.layers:
            raise VkharpError(f"weight {self.name!r} has {self.layers} layers, not {layer + 1}")
        return [(p, (layer - p.layer0) * p.rows) for p in self.parts if p.layer0 <= layer < p.layer0 + p.layers]


def rows_fitting(fmt: str, cols: int, max_bytes: int) -> int:
    """Most rows of a fmt matrix of `cols` columns whose quants and scales each fit in max_bytes
    (scale pairs may add one word)."""
    q_row = quant.words_per_row(fmt, cols) * 4
    layout = quant.scale_layout(fmt, cols)
    s_row = 0 if layout is None else layout[0] * np.dtype(layout[1]).itemsize
    n = max_bytes // q_row
    if s_row:
        n = min(n, (max_bytes - 4) // s_row)
    if n < 1:
        raise DeviceLimitError(f"one row of this {fmt} matrix ({q_row} bytes) does not fit in a "
                               f"{max_bytes}-byte storage buffer")
    return int(n)


def rows_per_part(packed: Packed, max_bytes: int) -> int:
    return rows_fitting(packed.format, packed.cols, max_bytes)


def stack_rows(mats: Sequence[Packed], name: str = "") -> Packed:
    """Matrices of one format and width stacked by rows, losslessly (each row keeps its quants and
    scales): a layer-stacked part, or one layer's [Wq; Wk; Wv] and [Wg; Wu] (engine/model.py)."""
    if len(mats) == 1:
        return mats[0]
    p0 = mats[0]
    for p in mats[1:]:
        if (p.format, p.cols) != (p0.format, p0.cols):
            raise VkharpError(f"{name}: cannot stack a {p.format} [{p.rows}x{p.cols}] matrix under a "
                              f"{p0.format} [{p0.rows}x{p0.cols}] one")
    return Packed(p0.format, sum(p.rows for p in mats), p0.cols, np.concatenate([p.qs for p in mats]),
                  None if p0.scales is None else np.concatenate([p.scales for p in mats]))


def _upload_part(device: Device, p: Packed, label: str):
    qs = device.upload(np.ascontiguousarray(p.qs), f"{label}.qs")
    sw = p.scale_words()
    return qs, (device.upload(sw, f"{label}.scales") if sw is not None else None)


def upload_stacked(device: Device, layers: Sequence[Packed] | Callable[[int], Packed], n_layers: int | None = None,
                   name: str = "", max_bytes: int | None = None) -> DeviceWeight:
    """Upload one matrix per layer (a list, or a function of the layer index read lazily) as one
    layer-stacked DeviceWeight. Consecutive layers of one format share parts; a change of format
    (mixed-precision GGUFs) starts a new part."""
    get = layers if callable(layers) else layers.__getitem__
    n_layers = n_layers if n_layers is not None else len(layers)
    limit = max_bytes or device.max_buffer_bytes
    first = get(0)
    parts: list[WeightPart] = []
    group: list[Packed] = []
    group_l0 = 0

    def flush():
        if group:
            qs, sc = _upload_part(device, stack_rows(group, name), f"{name}[layers {group_l0}..]")
            parts.append(WeightPart(0, first.rows, qs, sc, group_l0, len(group), group[0].format))
            group.clear()

    for layer in range(n_layers):
        p = first if layer == 0 else get(layer)
        if (p.rows, p.cols) != (first.rows, first.cols):
            raise VkharpError(f"{name}: layer {layer} is {p.rows}x{p.cols}, layer 0 {first.rows}x{first.cols}; "
                              f"they cannot be stacked")
        per = rows_per_part(p, limit)
        if per < p.rows:                       # a layer larger than a buffer: split its rows
            flush()
            for r0 in range(0, p.rows, per):
                sub = p.rows_slice(r0, min(p.rows, r0 + per))
                qs, sc = _upload_part(device, sub, f"{name}[{layer}][{r0}]")
                parts.append(WeightPart(r0, sub.rows, qs, sc, layer, 1, p.format))
            continue
        if group and (p.format != group[0].format or len(group) >= per // p.rows):
            flush()
        if not group:
            group_l0 = layer
        group.append(p)
    flush()
    return DeviceWeight(first.format, first.rows, first.cols, parts, name, n_layers)


def upload_weight(device: Device, packed: Packed, name: str = "", max_bytes: int | None = None) -> DeviceWeight:
    """One matrix (a single layer): split by rows if it does not fit one buffer."""
    return upload_stacked(device, [packed], 1, name, max_bytes)


@dataclass
class StackedF32:
    """A 2-D f32 tensor of every layer as plain floats [layers, rows, cols] (Local1D weights: their kernel
    reads f32 at an offset), in parts of whole layers that each fit one buffer."""
    rows: int
    cols: int
    parts: list[tuple[Buffer, int, int]]   # (buffer, first layer, layers in it)
    name: str = ""
    layers: int = 1

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b, _, _ in self.parts)

    def part_for(self, layer: int) -> tuple[Buffer, int]:
        """(the buffer holding `layer`, the layer's index in it)."""
        for buf, l0, n in self.parts:
            if l0 <= layer < l0 + n:
                return buf, layer - l0
        raise VkharpError(f"weight {self.name!r} has {self.layers} layers, not {layer + 1}")


def upload_f32_stacked(device: Device, get: Callable[[int], Packed], n_layers: int, name: str = "",
                       max_bytes: int | None = None) -> StackedF32:
    """Upload one f32 matrix per layer (get(i), read lazily) as StackedF32; other formats are refused."""
    limit = max_bytes or device.max_buffer_bytes
    first = get(0)
    per_layer = first.rows * first.cols * 4
    if per_layer > limit:
        raise DeviceLimitError(f"{name}: one layer's {first.rows}x{first.cols} f32 weights ({per_layer / 2**20:.1f} MiB) "
                               f"do not fit in a {limit / 2**20:.1f} MiB storage buffer; use a narrower layer")
    per_part = max(1, limit // per_layer)
    parts = []
    for l0 in range(0, n_layers, per_part):
        mats = []
        for layer in range(l0, min(n_layers, l0 + per_part)):
            p = first if layer == 0 else get(layer)
            if p.format != "f32" or (p.rows, p.cols) != (first.rows, first.cols):
                raise VkharpError(f"{name}: layer {layer} is a {p.format} {p.rows}x{p.cols} matrix; this tensor must "
                                  f"be f32 {first.rows}x{first.cols} in every layer (convert the checkpoint again)")
            mats.append(np.ascontiguousarray(p.qs).view(np.float32).reshape(p.rows, p.cols))
        parts.append((device.upload(np.stack(mats), f"{name}[layers {l0}..]"), l0, len(mats)))
    return StackedF32(first.rows, first.cols, parts, name, n_layers)


def trainable_weight(buffer: Buffer, name: str = "") -> DeviceWeight:
    """An f32 buffer of shape [rows, cols] (or [layers, rows, cols]) as an f32 DeviceWeight, without a
    copy: the weights of a model trained from scratch, which the matrix kernels read (forward
    `ops.matmul`, backward `ops.matmul_t`) and `ops.adamw` updates in place. It must be a writable
    buffer (kind "act" or "store") in one piece: its size is the device's buffer limit."""
    if buffer.dtype != np.float32 or len(buffer.shape) not in (2, 3):
        raise VkharpError(f"trainable_weight: {buffer.name or name!r} must be f32 [rows, cols] or [layers, rows, cols], "
                          f"got {buffer.dtype} {buffer.shape}")
    if buffer.kind not in ("act", "store"):
        raise VkharpError(f"trainable_weight: {buffer.name or name!r} is a {buffer.kind!r} buffer; the optimizer "
                          f"must be able to write it (use kind 'act' or 'store')")
    layers, rows, cols = (1, *buffer.shape) if len(buffer.shape) == 2 else buffer.shape
    return DeviceWeight("f32", rows, cols, [WeightPart(0, rows, buffer, None, 0, layers, "f32")], name, layers)
