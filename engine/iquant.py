"""GGUF's non-linear 4-bit types (IQ4_NL, IQ4_XS) in our GPU layout: GGUF's bytes regrouped, the same size.

A 4-bit code q stands for the int8 KVALUES[q] (llama.cpp's kvalues_iq4nl); the nibbles are in the q4
layout (as q4_0: byte i of a 32-weight block's 16 holds weight i low and weight 16+i high), so a row's
quant words are GGUF's nibble bytes as they are, and its scales are the blocks' heads:

| format | GGUF block               | quants row (uint32 words) | scales row                                   | weight           |
|--------|--------------------------|---------------------------|----------------------------------------------|------------------|
| iq4_nl | 32: f16 d, 16 B nibbles  | nb x 4 (q4 layout)        | f16 d per block (2 per word)                 | d*kv[q]          |
| iq4_xs | 256: f16 d, u16 scales_h, 4 B scales_l, 128 B nibbles | nb x 4 (q4 layout) | 2 words per super-block: d | scales_h << 16, scales_l | (d*(ls-32))*kv[q] |

iq4_xs: sub-block ib (0..7) has the 6-bit ls = (scales_l >> 4ib) & 15 | ((scales_h >> 2ib) & 3) << 4;
the products are in float32 in gguf's order (d*(ls-32) first), so decoding is bit-identical to
gguf.quants.dequantize. gguf has no quantizer for these types: `quantize_blocks` is a plain one
(abs-max scale per block, nearest code) for tests, not llama.cpp's search.
"""
from __future__ import annotations

import numpy as np

from .errors import VkharpError
from .kquant import gguf_blocks

IFORMATS = ("iq4_nl", "iq4_xs")
KVALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int8)
GGUF_BLOCK = {"iq4_nl": (32, 18), "iq4_xs": (256, 136)}
HEAD = {"iq4_nl": 2, "iq4_xs": 8}          # bytes of a GGUF block before its nibbles (the scales row's part)


def block_cols(fmt: str) -> int:
    return GGUF_BLOCK[fmt][0]


def words_per_row(fmt: str, cols: int) -> int:
    return cols // 32 * 4


def scale_layout(fmt: str, cols: int) -> tuple[int, type]:
    return (cols // 32, np.uint16) if fmt == "iq4_nl" else (cols // 256 * 2, np.uint32)


def _blocks(raw: np.ndarray, fmt: str, rows: int, cols: int) -> np.ndarray:
    return gguf_blocks(raw, fmt, rows, cols, GGUF_BLOCK[fmt])


def from_gguf(raw: np.ndarray, fmt: str, rows: int, cols: int):
    """(qs uint32 [rows, words], scales [rows, n]) from GGUF blocks of a [rows, cols] tensor."""
    blocks, h = _blocks(raw, fmt, rows, cols), HEAD[fmt]
    qs = np.ascontiguousarray(blocks[:, :, h:]).reshape(rows, -1).view(np.uint32)
    n, dt = scale_layout(fmt, cols)
    scales = np.ascontiguousarray(blocks[:, :, :h]).reshape(rows, -1).view(dt).reshape(rows, n)
    return qs, scales


def to_gguf(qs: np.ndarray, scales: np.ndarray, fmt: str, rows: int, cols: int) -> np.ndarray:
    """Inverse of from_gguf: [rows, row_bytes] uint8 of GGUF blocks."""
    nblk = cols // GGUF_BLOCK[fmt][0]
    q = np.ascontiguousarray(qs).view(np.uint8).reshape(rows, nblk, -1)
    s = np.ascontiguousarray(scales).view(np.uint8).reshape(rows, nblk, HEAD[fmt])
    return np.concatenate([s, q], axis=2).reshape(rows, -1)


def _codes(qs: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The 4-bit codes [rows, cols / 32, 32] of the q4 layout."""
    b = np.ascontiguousarray(qs).view(np.uint8).reshape(rows, cols // 32, 16)
    return np.concatenate([b & np.uint8(15), b >> np.uint8(4)], axis=2)


def xs_scales(scales: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """iq4_xs: the 8 sub-block scales ls - 32 per super-block, int [rows, cols / 256, 8]."""
    w = np.ascontiguousarray(scales).view(np.uint32).reshape(rows, cols // 256, 2)
    ib = np.arange(8, dtype=np.uint32)
    ls = ((w[..., 1:2] >> (4 * ib)) & 15) | (((w[..., 0:1] >> (16 + 2 * ib)) & 3) << 4)
    return ls.astype(np.int32) - 32


def dequantize(qs: np.ndarray, scales: np.ndarray, fmt: str, rows: int, cols: int) -> np.ndarray:
    """float32 [rows, cols], bit-identical to gguf.quants.dequantize of the same blocks."""
    kv = KVALUES.astype(np.float32)[_codes(qs, rows, cols)]                     # [rows, nb, 32]
    nb = cols // 32
    if fmt == "iq4_nl":
        d = np.ascontiguousarray(scales).view(np.float16).astype(np.float32).reshape(rows, nb, 1)
        return (d * kv).reshape(rows, cols)
    ns = cols // 256
    d = np.ascontiguousarray(scales).view(np.uint32).reshape(rows, ns, 2)[..., 0].astype(np.uint16)
    d = d.view(np.float16).astype(np.float32).reshape(rows, ns, 1)
    dl = (d * xs_scales(scales, rows, cols).astype(np.float32)).reshape(rows, nb, 1)
    return (dl * kv).reshape(rows, cols)


def _nearest(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Codes q minimising |d * kv[q] - x| (x [..., 32], d [..., 1] float32)."""
    cand = d[..., None] * KVALUES.astype(np.float32)                           # [..., 1, 16]
    return np.abs(x[..., None] - cand).argmin(-1).astype(np.uint8)


def _nibbles(q: np.ndarray) -> np.ndarray:
    """Codes [..., 32] -> the q4 layout's 16 bytes [..., 16]."""
    return q[..., :16] | (q[..., 16:] << np.uint8(4))


def quantize_blocks(w: np.ndarray, fmt: str) -> np.ndarray:
    """GGUF blocks [rows, row_bytes] of a float32 matrix: d (or each sub-block's d*(ls-32)) maps the
    block's largest |w| to code 0 (-127), as llama.cpp's first guess; then the nearest code per weight."""
    rows, cols = w.shape
    bc, bb = GGUF_BLOCK[fmt]
    if cols % bc:
        raise VkharpError(f"{fmt} needs the column count to be a multiple of {bc}, got {cols}")
    x = w.astype(np.float32).reshape(rows, cols // 32, 32)
    top = np.take_along_axis(x, np.abs(x).argmax(-1)[..., None], -1)            # signed abs-max [rows, nb, 1]
    if fmt == "iq4_nl":
        d = (top / np.float32(-127)).astype(np.float16)
        q = _nearest(x, d.astype(np.float32))
        out = np.concatenate([d.view(np.uint8).reshape(rows, -1, 2), _nibbles(q)], axis=2)
        return out.reshape(rows, -1)
    ns = cols // 256
    ideal = (top / np.float32(-127)).reshape(rows, ns, 8)                       # each sub-block's own d
    big = np.take_along_axis(ideal, np.abs(ideal).argmax(-1)[..., None], -1)
    d = (big / np.float32(-32)).astype(np.float16)                              # [rows, ns, 1]
    df = d.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ls = np.where(df != 0, np.rint(ideal / df), 0).clip(-32, 31).astype(np.int32)
    dl = (df * ls.astype(np.float32)).reshape(rows, cols // 32, 1)
    q = _nearest(x, dl).reshape(rows, ns, 8, 32)
    u = (ls + 32).astype(np.uint32)
    ib = np.arange(8, dtype=np.uint32)
    sh = ((u >> 4) << (2 * ib)).sum(-1).astype(np.uint16)                       # [rows, ns]
    sl = ((u[..., 0::2] & 15) | ((u[..., 1::2] & 15) << 4)).astype(np.uint8)    # [rows, ns, 4]
    head = np.concatenate([d.reshape(rows, ns, 1).view(np.uint8).reshape(rows, ns, 2),
                           sh.reshape(rows, ns, 1).view(np.uint8).reshape(rows, ns, 2), sl], axis=2)
    out = np.concatenate([head, _nibbles(q).reshape(rows, ns, 128)], axis=2)
    return out.reshape(rows, ns * bb)
