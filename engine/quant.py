"""Weight formats in the GPU layout, and lossless conversion from/to GGUF blocks.

kp enables no 8/16-bit storage, so every format is packed into uint32 words and unpacked in the
shader. Semantics are GGUF's (a weight decodes to the same float), the layout is ours:

| format | quants buffer (uint32 words per row)                   | scales buffer                         | weight              |
|--------|--------------------------------------------------------|---------------------------------------|---------------------|
| f32    | cols words (the float bits)                            | none                                  | w                   |
| f16    | ceil(cols/2) words: half 2k low, 2k+1 high             | none                                  | w                   |
| q8_0   | 8 words per 32-block: int8 j at byte j                 | one f16 d per block, 2 per word       | d*q                 |
| q4_0   | 4 words per 32-block: byte j = q[j] | q[j+16] << 4     | one f16 d per block, 2 per word       | d*(q-8)             |
| q4_1   | same as q4_0                                           | one word per block: packHalf2x16(d,m) | d*q + m             |
| q5_0 q5_1 q4_k q5_k q6_k | engine/kquant.py (GGUF's 5-bit and k-quant types, permuted losslessly)          |
| iq4_nl iq4_xs            | engine/iquant.py (GGUF's non-linear 4-bit types: q4 nibbles, a 16-entry table)   |
| q2_k q3_k                | engine/kquant23.py (GGUF's 2- and 3-bit k-quants, regrouped losslessly)          |

Quants are kept apart from scales so that the quant words of a row are contiguous and 16-byte
aligned (vectorisable loads); scales are indexed flat by block: block b of row r is r*nb + b, and
f16 scales pair up across the whole buffer (a part re-packs its own).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import VkharpError

from . import iquant, kquant, kquant23

FORMATS = ("f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs",
           "q2_k", "q3_k")
# What `vkharp convert --dtype` offers: the formats gguf (or our k-quant quantizer) writes. The iq4
# types and q2_k/q3_k are kept from GGUF files only (iquant's and kquant23's quantizers are plain
# ones, for tests).
DTYPES = tuple(f for f in FORMATS if f not in iquant.IFORMATS + kquant23.K23FORMATS)
BLOCK = 32
# Bytes per weight as stored (quants + scales), for bandwidth figures.
BYTES_PER_WEIGHT = {"f32": 4.0, "f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32,
                    **{f: bb / bc for f, (bc, bb) in kquant.GGUF_BLOCK.items()},
                    **{f: bb / bc for f, (bc, bb) in iquant.GGUF_BLOCK.items()},
                    **{f: bb / bc for f, (bc, bb) in kquant23.GGUF_BLOCK.items()}}


def block_cols(fmt: str) -> int:
    """Columns of one GGUF block: rows of a q format must be whole blocks (256 for the k-quants)."""
    if fmt in kquant.KFORMATS:
        return kquant.block_cols(fmt)
    if fmt in iquant.IFORMATS:
        return iquant.block_cols(fmt)
    if fmt in kquant23.K23FORMATS:
        return kquant23.block_cols(fmt)
    return BLOCK if fmt.startswith("q") else 1


def has_scales(fmt: str) -> bool:
    """Whether a format has a scales array (every format but f32 and f16)."""
    return fmt not in ("f32", "f16")


def scale_layout(fmt: str, cols: int) -> tuple[int, type] | None:
    """(entries per row, dtype) of a format's scales array, or None (f32, f16)."""
    if fmt in kquant.KFORMATS:
        return kquant.scale_layout(fmt, cols)
    if fmt in iquant.IFORMATS:
        return iquant.scale_layout(fmt, cols)
    if fmt in kquant23.K23FORMATS:
        return kquant23.scale_layout(fmt, cols)
    if fmt in ("q8_0", "q4_0"):
        return cols // BLOCK, np.uint16
    if fmt == "q4_1":
        return cols // BLOCK, np.uint32
    return None


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise VkharpError(f"unknown weight format {fmt!r}; supported: {', '.join(FORMATS)}")
    return fmt


def words_per_row(fmt: str, cols: int) -> int:
    check_format(fmt)
    if fmt == "f32":
        return cols
    if fmt == "f16":
        return (cols + 1) // 2
    if fmt in kquant.KFORMATS:
        return kquant.words_per_row(fmt, cols)
    if fmt in iquant.IFORMATS:
        return iquant.words_per_row(fmt, cols)
    if fmt in kquant23.K23FORMATS:
        return kquant23.words_per_row(fmt, cols)
    nb = cols // BLOCK
    return nb * (8 if fmt == "q8_0" else 4)


@dataclass
class Packed:
    """A [rows, cols] weight matrix in the GPU layout, on the host."""
    format: str
    rows: int
    cols: int
    qs: np.ndarray                 # uint32 [rows, words_per_row]
    scales: np.ndarray | None      # scale_layout(format, cols): uint16 [rows, nb] (q8_0, q4_0), ..., None (f32/f16)

    @property
    def nbytes(self) -> int:
        return self.qs.nbytes + (0 if self.scales is None else self.scales.nbytes)

    def row_bytes(self) -> float:
        return self.nbytes / self.rows

    def rows_slice(self, r0: int, r1: int) -> "Packed":
        return Packed(self.format, r1 - r0, self.cols, self.qs[r0:r1],
                      None if self.scales is None else self.scales[r0:r1])

    def scale_words(self) -> np.ndarray | None:
        """The scales buffer's uint32 words (f16 scales paired, padded to an even count)."""
        if self.scales is None:
            return None
        flat = np.ascontiguousarray(self.scales).reshape(-1)
        if flat.dtype == np.uint32:
            return flat
        if flat.size % 2:
            flat = np.concatenate([flat, np.zeros(1, np.uint16)])
        return flat.view(np.uint32)


def _check_matrix(w: np.ndarray, fmt: str):
    check_format(fmt)
    if w.ndim != 2:
        raise VkharpError(f"a weight matrix must be 2-D, got shape {w.shape}")
    if w.shape[1] % block_cols(fmt):
        raise VkharpError(f"format {fmt} needs the column count to be a multiple of {block_cols(fmt)}, "
                          f"got {w.shape[1]}")


def quantize(w: np.ndarray, fmt: str) -> Packed:
    """Convert a float matrix, rounding exactly as GGUF's reference quantizers do."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    _check_matrix(w, fmt)
    rows, cols = w.shape
    if fmt == "f32":
        return Packed(fmt, rows, cols, w.view(np.uint32).copy(), None)
    if fmt == "f16":
        h = w.astype(np.float16)
        if cols % 2:
            h = np.concatenate([h, np.zeros((rows, 1), np.float16)], axis=1)
        return Packed(fmt, rows, cols, np.ascontiguousarray(h).view(np.uint32), None)
    if fmt in ("q4_k", "q5_k", "q6_k"):
        return from_gguf_blocks(kquant.quantize_k(w, fmt), fmt, rows, cols)
    if fmt in iquant.IFORMATS:
        return from_gguf_blocks(iquant.quantize_blocks(w, fmt), fmt, rows, cols)
    if fmt in kquant23.K23FORMATS:
        return from_gguf_blocks(kquant23.quantize_blocks(w, fmt), fmt, rows, cols)
    from gguf.quants import quantize as gguf_quantize
    return from_gguf_blocks(gguf_quantize(w, _gguf_type(fmt)), fmt, rows, cols)


def _gguf_type(fmt: str):
    from gguf import GGMLQuantizationType as T
    return {"f32": T.F32, "f16": T.F16, "q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1, "q5_0": T.Q5_0,
            "q5_1": T.Q5_1, "q4_k": T.Q4_K, "q5_k": T.Q5_K, "q6_k": T.Q6_K, "iq4_nl": T.IQ4_NL,
            "iq4_xs": T.IQ4_XS, "q2_k": T.Q2_K, "q3_k": T.Q3_K}[fmt]


def from_gguf_blocks(raw: np.ndarray, fmt: str, rows: int, cols: int) -> Packed:
    """Lossless repack of GGUF data of any of our formats ([rows, row_bytes] uint8 or typed)."""
    check_format(fmt)
    if fmt in kquant.KFORMATS:
        qs, scales = kquant.from_gguf(raw, fmt, rows, cols)
        return Packed(fmt, rows, cols, qs, scales)
    if fmt in iquant.IFORMATS:
        return Packed(fmt, rows, cols, *iquant.from_gguf(raw, fmt, rows, cols))
    if fmt in kquant23.K23FORMATS:
        return Packed(fmt, rows, cols, *kquant23.from_gguf(raw, fmt, rows, cols))
    if fmt in ("f32", "f16"):
        arr = np.asarray(raw).reshape(-1).view(np.float32 if fmt == "f32" else np.float16).reshape(rows, cols)
        return quantize(arr.astype(np.float32), fmt) if fmt == "f32" else _pack_f16(arr)
    nb = cols // BLOCK
    block_bytes = {"q8_0": 34, "q4_0": 18, "q4_1": 20}[fmt]
    blocks = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if blocks.size != rows * nb * block_bytes:
        raise VkharpError(f"{fmt} data for [{rows}, {cols}] must be {rows * nb * block_bytes} bytes, got {blocks.size}")
    blocks = blocks.reshape(rows, nb, block_bytes)
    if fmt == "q4_1":
        scales = np.ascontiguousarray(blocks[:, :, 0:4]).view(np.uint32).reshape(rows, nb)  # d low, m high
        quants = blocks[:, :, 4:]
    else:
        scales = np.ascontiguousarray(blocks[:, :, 0:2]).view(np.uint16).reshape(rows, nb)
        quants = blocks[:, :, 2:]
    qs = np.ascontiguousarray(quants).reshape(rows, -1).view(np.uint32)
    return Packed(fmt, rows, cols, qs, scales)


def _pack_f16(h: np.ndarray) -> Packed:
    rows, cols = h.shape
    if cols % 2:
        h = np.concatenate([h, np.zeros((rows, 1), np.float16)], axis=1)
    return Packed("f16", rows, cols, np.ascontiguousarray(h).view(np.uint32), None)


def to_gguf_blocks(p: Packed) -> np.ndarray:
    """Inverse of from_gguf_blocks for quantized formats: [rows, nb * block_bytes] uint8."""
    if not has_scales(p.format):
        raise VkharpError("to_gguf_blocks is for quantized formats")
    if p.format in kquant.KFORMATS:
        return kquant.to_gguf(p.qs, p.scales, p.format, p.rows, p.cols)
    if p.format in iquant.IFORMATS:
        return iquant.to_gguf(p.qs, p.scales, p.format, p.rows, p.cols)
    if p.format in kquant23.K23FORMATS:
        return kquant23.to_gguf(p.qs, p.scales, p.format, p.rows, p.cols)
    nb = p.cols // BLOCK
    quants = p.qs.view(np.uint8).reshape(p.rows, nb, -1)
    scales = p.scales.view(np.uint8).reshape(p.rows, nb, -1)
    return np.concatenate([scales, quants], axis=2).reshape(p.rows, -1)


def dequantize(p: Packed) -> np.ndarray:
    """Decode to float32 [rows, cols] (the numpy twin of what every weight-reading shader does)."""
    if p.format == "f32":
        return p.qs.view(np.float32).reshape(p.rows, p.cols).copy()
    if p.format == "f16":
        return p.qs.view(np.float16).reshape(p.rows, -1)[:, :p.cols].astype(np.float32)
    if p.format in kquant.KFORMATS:
        return kquant.dequantize(p.qs, p.scales, p.format, p.rows, p.cols)
    if p.format in iquant.IFORMATS:
        return iquant.dequantize(p.qs, p.scales, p.format, p.rows, p.cols)
    if p.format in kquant23.K23FORMATS:
        return kquant23.dequantize(p.qs, p.scales, p.format, p.rows, p.cols)
    nb = p.cols // BLOCK
    if p.format == "q8_0":
        q = p.qs.view(np.int8).reshape(p.rows, nb, BLOCK).astype(np.float32)
        d = p.scales.view(np.float16).reshape(p.rows, nb, 1).astype(np.float32)
        return (q * d).reshape(p.rows, p.cols)
    b = p.qs.view(np.uint8).reshape(p.rows, nb, 16)
    q = np.concatenate([b & 0x0F, b >> 4], axis=2).astype(np.float32)
    if p.format == "q4_0":
        d = p.scales.view(np.float16).reshape(p.rows, nb, 1).astype(np.float32)
        return ((q - 8.0) * d).reshape(p.rows, p.cols)
    dm = p.scales.view(np.float16).reshape(p.rows, nb, 2).astype(np.float32)
    return (q * dm[:, :, 0:1] + dm[:, :, 1:2]).reshape(p.rows, p.cols)
