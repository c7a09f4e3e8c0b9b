"""What the converter needs from a checkpoint, whatever its file format (HF directory or GGUF)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import VkharpError
from ..quant import Packed, dequantize, quantize


@dataclass
class SourceTensor:
    name: str                    # HF name (after any renaming the source does)
    shape: tuple[int, ...]       # HF shape: [out, in] for matrices
    source_format: str           # lower case: f32 f16 bf16 q8_0 q4_0 q4_1 q4_k q5_0 q6_k ...
    ref: object = field(default=None, repr=False)   # the source's own handle


@dataclass
class Converted:
    value: object                # Packed (2-D) or float32 ndarray (1-D)
    rel_error: float | None = None   # ‖stored − source‖ / ‖source‖ when the conversion was lossy


@dataclass
class RowSlice:
    """Rows [r0, r1) of a fused source tensor (Phi-3's qkv_proj, gate_up_proj), read as a tensor of its own."""
    parent: SourceTensor
    r0: int
    r1: int


def resolve(t: SourceTensor) -> tuple[SourceTensor, slice | None]:
    """(the tensor stored in the file, the rows of it that t is; None = all)."""
    if isinstance(t.ref, RowSlice):
        return t.ref.parent, slice(t.ref.r0, t.ref.r1)
    return t, None


def split_fused(tensors: dict[str, SourceTensor], splits: dict[str, list[tuple[str, int, int]]],
                layers: int) -> None:
    """Replace each layer's fused tensor (Architecture.fused_splits) by its parts, as row slices; a
    fused tensor whose rows do not add up to its parts' is refused, naming both."""
    for i in range(layers):
        for fused, parts in splits.items():
            t = tensors.pop(f"model.layers.{i}.{fused}", None)
            if t is None:
                continue
            want = parts[-1][2]
            if len(t.shape) != 2 or t.shape[0] != want:
                sizes = ", ".join(f"{n.split('.')[1]} {r1 - r0}" for n, r0, r1 in parts)
                raise VkharpError(f"{t.name} has shape {list(t.shape)}; the config implies {want} rows ({sizes})")
            for name, r0, r1 in parts:
                full = f"model.layers.{i}.{name}"
                tensors[full] = SourceTensor(full, (r1 - r0, t.shape[1]), t.source_format, RowSlice(t, r0, r1))


class Source:
    """Base class: config dict, tensors by HF name, side files; `read` converts one tensor."""
    kind = "?"
    config: dict
    tensors: dict[str, SourceTensor]
    skipped: list[str]
    unmapped: list[str]          # source tensors with no known meaning (the converter refuses them)

    def default_format(self, t: SourceTensor) -> str:
        raise NotImplementedError

    def read(self, t: SourceTensor, fmt: str) -> Converted:
        raise NotImplementedError

    def side_files(self) -> dict[str, bytes]:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        pass


CHUNK_ELEMENTS = 1 << 22   # rows are converted in blocks of about this many weights (16 MB as f32)


def pack_rows(name: str, shape: tuple[int, int], fmt: str, get_rows, exact_source: bool) -> Converted:
    """Store a [rows, cols] matrix as fmt, a block of rows at a time (every format packs rows
    independently), so memory holds the packed result plus one block. get_rows(r0, r1) returns float32
    rows. The error ‖stored − source‖/‖source‖ is measured unless the values are known to survive."""
    rows, cols = shape
    step = max(1, CHUNK_ELEMENTS // max(cols, 1))
    qs = scales = None
    num = den = 0.0
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        w = np.ascontiguousarray(get_rows(r0, r1), dtype=np.float32)
        if fmt == "f16":
            big = float(np.max(np.abs(w))) if w.size else 0.0
            if not np.isfinite(big) or big > 65504.0:
                raise VkharpError(f"{name}: values up to {big:g} do not fit in f16; convert with dtype f32")
        p = quantize(w, fmt)
        if qs is None:
            qs = np.empty((rows, p.qs.shape[1]), p.qs.dtype)
            scales = None if p.scales is None else np.empty((rows, p.scales.shape[1]), p.scales.dtype)
        qs[r0:r1] = p.qs
        if scales is not None:
            scales[r0:r1] = p.scales
        if fmt != "f32" and not exact_source:
            w64 = w.astype(np.float64)
            num += float(np.sum((dequantize(p).astype(np.float64) - w64) ** 2))
            den += float(np.sum(w64 * w64))
    packed = Packed(fmt, rows, cols, qs, scales)
    if fmt == "f32" or exact_source:
        return Converted(packed)
    return Converted(packed, (num / den) ** 0.5 if den else num ** 0.5)
