"""GGUF's 2- and 3-bit k-quants (Q2_K, Q3_K) in our GPU layout: a lossless regrouping of GGUF's
super-blocks, byte for byte the same size.

A row of W is its quant words (the `qs` buffer) and its scales (the `scales` buffer); nb = cols/32
blocks of 32 weights, ns = cols/256 super-blocks of 16 sub-blocks of 16 weights:

| format | GGUF super-block                                   | quants row (uint32 words)                                  | scales row                                    | weight              |
|--------|----------------------------------------------------|------------------------------------------------------------|-----------------------------------------------|---------------------|
| q2_k   | 84 B: scales[16], qs[64], f16 d, f16 dmin           | nb x 2 two-bit words, then ns x 4 words: the 16 scale bytes | uint32 per super-block: d | dmin << 16        | (d*sc)*q - dmin*m   |
| q3_k   | 110 B: hmask[32], qs[64], scales[12], f16 d          | nb x 2 two-bit words, then nb high-bit words                | 14 B per super-block (uint16 x 7): scales[12], d | (d*(s-32))*(q-4)  |

q2_k: sc, m = low, high nibble of scale byte j (sub-block j, 4 bits each); q in 0..3.
q3_k: s = the 6-bit scale j packed as GGUF packs it (low 4 bits in byte j%8 at 4*(j//8), high 2 in
byte 8 + j%4 at 2*(j//4)); q = low 2 bits | high bit << 2, in 0..7 (GGUF's ql - 4*(1 - h)).
Two-bit words: weight i of a block (u = i//16, f = i%16//4, k = i%4) is in word 2b + u, byte k, bits
2f: the shader gets 4 weights at bytes k = 0..3 with one shift by 2f and one AND per word (the vec4
of weights 4(4u+f) .. +3, in x order). q3_k's high bit of that weight is in its block's high word,
byte k, bit 4u + f, so one shift and one AND bring it next to the two low bits. The q3_k scales row
is 14 bytes per super-block flat over the buffer (super-block S at byte 14*S: every other one starts
mid-word; the shader loads the 4 words holding it and shifts). Products are float32 in gguf's order
(d*sc first, then *q, then - dmin*m), so decoding is bit-identical to gguf.quants.dequantize.
gguf has no quantizer for these types: `quantize_blocks` is a plain one for tests (min-max per
sub-block for q2_k, abs-max for q3_k, scales rounded to the super-block's grid), not llama.cpp's.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .errors import VkharpError
from .kquant import gguf_blocks

K23FORMATS = ("q2_k", "q3_k")
SUPER = 256
GGUF_BLOCK = {"q2_k": (256, 84), "q3_k": (256, 110)}


def block_cols(fmt: str) -> int:
    return SUPER


def words_per_row(fmt: str, cols: int) -> int:
    nb = cols // 32
    return nb * 2 + nb // 2 if fmt == "q2_k" else nb * 3


def scale_layout(fmt: str, cols: int) -> tuple[int, type]:
    """(entries per row, dtype) of the scales array."""
    ns = cols // SUPER
    return (ns, np.uint32) if fmt == "q2_k" else (ns * 7, np.uint16)


# --- per-row (byte, shift) maps of every weight's fields ------------------------------------------

@lru_cache(maxsize=64)
def _ours(fmt: str, cols: int):
    """Our quants row: (lo_byte, lo_shift, hi_byte, hi_bit) per weight (hi: None for q2_k)."""
    c = np.arange(cols)
    b, i = c // 32, c % 32
    u, f, k = i // 16, (i % 16) // 4, i % 4
    lo_b, lo_s = 8 * b + 4 * u + k, 2 * f
    if fmt == "q2_k":
        return lo_b, lo_s, None, None
    return lo_b, lo_s, 8 * (cols // 32) + 4 * b + k, 4 * u + f


@lru_cache(maxsize=64)
def _gguf(fmt: str, cols: int):
    """GGUF's row: (lo_byte, lo_shift, hi_byte, hi_bit) per weight, as gguf.quants decodes it."""
    bb = GGUF_BLOCK[fmt][1]
    c = np.arange(cols)
    s, bs, i = c // SUPER, (c % SUPER) // 32, c % 32
    qs0 = 16 if fmt == "q2_k" else 32
    lo_b, lo_s = s * bb + qs0 + 32 * (bs // 4) + i, 2 * (bs % 4)
    if fmt == "q2_k":
        return lo_b, lo_s, None, None
    return lo_b, lo_s, s * bb + i, bs


def _get(rb: np.ndarray, maps) -> np.ndarray:
    """The 2-bit (q2_k) or 3-bit (q3_k) codes [rows, cols] of rows of bytes."""
    lo_b, lo_s, hi_b, hi_s = maps
    q = (rb[:, lo_b] >> lo_s.astype(np.uint8)) & np.uint8(3)
    if hi_b is not None:
        q = q | (((rb[:, hi_b] >> hi_s.astype(np.uint8)) & np.uint8(1)) << np.uint8(2))
    return q


def _put(out: np.ndarray, q: np.ndarray, maps) -> None:
    lo_b, lo_s, hi_b, hi_s = maps
    fields = [(lo_b, lo_s, q & np.uint8(3))]
    if hi_b is not None:
        fields.append((hi_b, hi_s, q >> np.uint8(2)))
    for byte, shift, val in fields:
        for s in np.unique(shift):          # one shift: every byte at most once (no lost |=)
            sel = shift == s
            out[:, byte[sel]] |= (val[:, sel] << np.uint8(s)).astype(np.uint8)


def _heads(fmt: str):
    """Byte ranges of a GGUF super-block: (ranges that become the scales row, range kept in the quants row)."""
    return ([(80, 84)], (0, 16)) if fmt == "q2_k" else ([(96, 108), (108, 110)], None)


def _blocks(raw: np.ndarray, fmt: str, rows: int, cols: int) -> np.ndarray:
    return gguf_blocks(raw, fmt, rows, cols, GGUF_BLOCK[fmt]).reshape(rows, -1)


def from_gguf(raw: np.ndarray, fmt: str, rows: int, cols: int):
    """(qs uint32 [rows, words], scales [rows, n]) from GGUF super-blocks of a [rows, cols] tensor."""
    rb = _blocks(raw, fmt, rows, cols)
    ns, nb = cols // SUPER, cols // 32
    qbytes = np.zeros((rows, words_per_row(fmt, cols) * 4), np.uint8)
    _put(qbytes, _get(rb, _gguf(fmt, cols)), _ours(fmt, cols))
    blocks = rb.reshape(rows, ns, -1)
    to_scales, in_quants = _heads(fmt)
    if in_quants is not None:
        qbytes[:, nb * 8:] = blocks[:, :, in_quants[0]:in_quants[1]].reshape(rows, -1)
    n, dt = scale_layout(fmt, cols)
    head = np.concatenate([blocks[:, :, a:b] for a, b in to_scales], axis=2)
    return qbytes.view(np.uint32), np.ascontiguousarray(head).reshape(rows, -1).view(dt).reshape(rows, n)


def to_gguf(qs: np.ndarray, scales: np.ndarray, fmt: str, rows: int, cols: int) -> np.ndarray:
    """Inverse of from_gguf: [rows, row_bytes] uint8 of GGUF super-blocks."""
    ns, nb = cols // SUPER, cols // 32
    bb = GGUF_BLOCK[fmt][1]
    qbytes = np.ascontiguousarray(qs).view(np.uint8).reshape(rows, -1)
    out = np.zeros((rows, ns * bb), np.uint8)
    _put(out, _get(qbytes, _ours(fmt, cols)), _gguf(fmt, cols))
    blocks = out.reshape(rows, ns, bb)
    to_scales, in_quants = _heads(fmt)
    head = np.ascontiguousarray(scales).view(np.uint8).reshape(rows, ns, -1)
    at = 0
    for a, b in to_scales:
        blocks[:, :, a:b] = head[:, :, at:at + b - a]
        at += b - a
    if in_quants is not None:
        blocks[:, :, in_quants[0]:in_quants[1]] = qbytes[:, nb * 8:].reshape(rows, ns, -1)
    return out


def q3_scales(sc12: np.ndarray) -> np.ndarray:
    """q3_k: the 16 signed sub-block scales s - 32, float32 [..., 16], from the 12 packed bytes, as gguf."""
    lo = (sc12[..., 0:8, None] >> np.array([0, 4], np.uint8)).swapaxes(-1, -2).reshape(*sc12.shape[:-1], 16)
    hi = (sc12[..., 8:12, None] >> np.array([0, 2, 4, 6], np.uint8)).swapaxes(-1, -2).reshape(*sc12.shape[:-1], 16)
    s = (lo & np.uint8(15)) | ((hi & np.uint8(3)) << np.uint8(4))
    return (s.astype(np.int8) - np.int8(32)).astype(np.float32)


def dequantize(qs: np.ndarray, scales: np.ndarray, fmt: str, rows: int, cols: int) -> np.ndarray:
    """float32 [rows, cols], bit-identical to gguf.quants.dequantize of the same super-blocks."""
    ns, nb = cols // SUPER, cols // 32
    qbytes = np.ascontiguousarray(qs).view(np.uint8).reshape(rows, -1)
    q = _get(qbytes, _ours(fmt, cols)).reshape(rows, cols // 16, 16)
    if fmt == "q2_k":
        sc = qbytes[:, nb * 8:].reshape(rows, ns, 16)
        dd = np.ascontiguousarray(scales).view(np.float16).astype(np.float32).reshape(rows, ns, 2)
        dl = (dd[..., 0:1] * (sc & np.uint8(15)).astype(np.float32)).reshape(rows, cols // 16, 1)
        ml = (dd[..., 1:2] * (sc >> np.uint8(4)).astype(np.float32)).reshape(rows, cols // 16, 1)
        return (dl * q.astype(np.float32) - ml).reshape(rows, cols)
    head = np.ascontiguousarray(scales).view(np.uint8).reshape(rows, ns, 14)
    d = head[..., 12:14].copy().view(np.float16).astype(np.float32)                 # [rows, ns, 1]
    dl = (d * q3_scales(head[..., 0:12])).reshape(rows, cols // 16, 1)
    return (dl * (q.astype(np.int8) - np.int8(4)).astype(np.float32)).reshape(rows, cols)


# --- a plain quantizer (gguf has none for these types) ---------------------------------------------

def quantize_blocks(w: np.ndarray, fmt: str) -> np.ndarray:
    """GGUF super-blocks [rows, row_bytes] of a float32 matrix. q2_k: a min-max fit per 16 weights
    (q = 0..3 spans [min(x, 0), max(x, 0)]); q3_k: the sub-block's largest |x| maps to code -4, as
    llama.cpp's first guess; the sub-block scales then rounded to the super-block's 4-bit / 6-bit grid."""
    rows, cols = w.shape
    if cols % SUPER:
        raise VkharpError(f"{fmt} needs the column count to be a multiple of {SUPER}, got {cols}")
    ns = cols // SUPER
    n = rows * ns
    x = w.astype(np.float32).reshape(n, 16, 16)
    out = np.zeros((n, GGUF_BLOCK[fmt][1]), np.uint8)
    with np.errstate(divide="ignore", invalid="ignore"):
        if fmt == "q2_k":
            lo, hi = np.minimum(x.min(-1), 0), np.maximum(x.max(-1), 0)
            scale, mins = (hi - lo) / np.float32(3), -lo                               # [n, 16]
            d = (scale.max(-1) / np.float32(15)).astype(np.float16)
            dmin = (mins.max(-1) / np.float32(15)).astype(np.float16)
            df, dmf = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
            sc = np.where(df > 0, np.rint(scale / df), 0).clip(0, 15).astype(np.uint8)
            m = np.where(dmf > 0, np.rint(mins / dmf), 0).clip(0, 15).astype(np.uint8)
            es, em = (df * sc.astype(np.float32))[..., None], (dmf * m.astype(np.float32))[..., None]
            q = np.where(es > 0, np.rint((x + em) / es), 0).clip(0, 3).astype(np.uint8)
            out[:, 0:16] = sc | (m << np.uint8(4))
            out[:, 80:82] = d.reshape(n, 1).view(np.uint8)
            out[:, 82:84] = dmin.reshape(n, 1).view(np.uint8)
        else:
            top = np.take_along_axis(x, np.abs(x).argmax(-1)[..., None], -1)[..., 0]   # signed abs-max [n, 16]
            ideal = top / np.float32(-4)
            big = np.take_along_axis(ideal, np.abs(ideal).argmax(-1)[:, None], -1)
            d = (big / np.float32(-32)).astype(np.float16)                            # [n, 1]
            df = d.astype(np.float32)
            ls = np.where(df != 0, np.rint(ideal / df), 0).clip(-32, 31).astype(np.int32)
            dl = (df * ls.astype(np.float32))[..., None]
            v = np.where(dl != 0, np.rint(x / dl), 0).clip(-4, 3).astype(np.int32)
            q = (v + 4).astype(np.uint8)
            u = (ls + 32).astype(np.uint8)
            out[:, 96:104] = (u[:, 0:8] & np.uint8(15)) | ((u[:, 8:16] & np.uint8(15)) << np.uint8(4))
            h = (u >> np.uint8(4)).reshape(n, 4, 4)                                    # [n, j // 4, j % 4]
            out[:, 104:108] = h[:, 0] | (h[:, 1] << np.uint8(2)) | (h[:, 2] << np.uint8(4)) | (h[:, 3] << np.uint8(6))
            out[:, 108:110] = d.reshape(n, 1).view(np.uint8)
    _put(out, q.reshape(n, SUPER), _gguf(fmt, SUPER))
    return out.reshape(rows, ns * GGUF_BLOCK[fmt][1])
