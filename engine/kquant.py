"""GGUF's 5-bit and k-quant types (Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) in our GPU layout: a lossless bit
permutation of GGUF's blocks, byte for byte the same size.

A row of W is stored as one run of quant words (the `qs` buffer) and its scales (the `scales` buffer);
nb = cols/32 blocks of 32 weights, ns = cols/256 super-blocks:

| format | quants row (uint32 words)                                                    | scales row                         |
|--------|------------------------------------------------------------------------------|------------------------------------|
| q5_0   | nb x 4 low nibbles (q4 layout) | ceil(nb/4) x 4 high-bit words (1 per block) | f16 d per block (2 per word)       |
| q5_1   | as q5_0                                                                      | packHalf2x16(d, m) per block       |
| q4_k   | nb x 4 low nibbles                                                           | GGUF's 16 head bytes per super-block: d, dmin, 12 bytes of 6-bit scales and mins |
| q5_k   | nb x 4 low nibbles | nb high-bit words                                       | as q4_k                            |
| q6_k   | nb x 4 low nibbles | nb x 2 words of 2-bit highs | ns x 4 words of int8 scales | f16 d per super-block (2 per word) |

q4 layout (as q4_0/q4_1): byte i of a block's 16 holds weight i (low nibble) and weight 16+i (high).
The high bits are placed so that the shader ORs them next to their nibble with one shift and one AND
per uint32 word (shaders/include/weights.glsl q5_word / q6_word): for the 4 weights of word w
(byte k: weight 4w+k, nibble 16+4w+k), a q5 high-bit word holds weight 4w+k's bit at 8k+w and
16+4w+k's at 8k+4+w; a q6 word pair holds word w's 2-bit fields in word w/2 at 8k+2(w%2) and
8k+4+2(w%2). Decoding: weight = d*(q-16) (q5_0), d*q+m (q5_1), (d*sc)*q - dmin*m (q4_k, q5_k;
6-bit sc and m per 32), (d*sc)*(q-32) (q6_k; int8 sc per 16), products in float32 as gguf computes them.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .errors import VkharpError

KFORMATS = ("q5_0", "q5_1", "q4_k", "q5_k", "q6_k")
SUPER = 256
GGUF_BLOCK = {"q5_0": (32, 22), "q5_1": (32, 24), "q4_k": (256, 144), "q5_k": (256, 176), "q6_k": (256, 210)}
HIGH_BITS = {"q5_0": 1, "q5_1": 1, "q4_k": 0, "q5_k": 1, "q6_k": 2}


def block_cols(fmt: str) -> int:
    return GGUF_BLOCK[fmt][0]


def words_per_row(fmt: str, cols: int) -> int:
    nb = cols // 32
    if fmt in ("q5_0", "q5_1"):
        return nb * 4 + -(-nb // 4) * 4
    if fmt == "q4_k":
        return nb * 4
    if fmt == "q5_k":
        return nb * 5
    return nb * 6 + nb // 2                      # q6_k: lows, 2-bit highs, int8 scales


def scale_layout(fmt: str, cols: int) -> tuple[int, type]:
    """(entries per row, dtype) of the scales array."""
    nb, ns = cols // 32, cols // SUPER
    return {"q5_0": (nb, np.uint16), "q5_1": (nb, np.uint32), "q4_k": (ns * 4, np.uint32),
            "q5_k": (ns * 4, np.uint32), "q6_k": (ns, np.uint16)}[fmt]


# --- per-row (byte, shift) maps of every weight's fields ------------------------------------------

def _q4_pos(cols: int):
    """Our low nibbles: weight c of block b at byte 16b + c%16, shift 4 for c%32 >= 16."""
    c = np.arange(cols)
    i = c % 32
    return (c // 32) * 16 + i % 16, np.where(i >= 16, 4, 0)


def _lane_pos(i: np.ndarray):
    """(word w, byte k, high-nibble flag) of weight i of a block in the q4 layout."""
    hi = i >= 16
    j = i % 16
    return j // 4, j % 4, hi


@lru_cache(maxsize=64)
def _ours(fmt: str, cols: int):
    """Our quants row: (lo_byte, lo_shift, hi_byte, hi_shift) per weight (hi: None for q4_k)."""
    nb = cols // 32
    lo_b, lo_s = _q4_pos(cols)
    c = np.arange(cols)
    b, i = c // 32, c % 32
    w, k, hi = _lane_pos(i)
    if HIGH_BITS[fmt] == 0:
        return lo_b, lo_s, None, None
    if HIGH_BITS[fmt] == 1:
        pos = 8 * k + np.where(hi, 4, 0) + w
        hb = nb * 16 + b * 4 + pos // 8
    else:
        pos = 8 * k + np.where(hi, 4, 0) + 2 * (w % 2)
        hb = nb * 16 + b * 8 + (w // 2) * 4 + pos // 8
    return lo_b, lo_s, hb, pos % 8


@lru_cache(maxsize=64)
def _gguf(fmt: str, cols: int):
    """GGUF's row: (lo_byte, lo_shift, hi_byte, hi_shift) per weight, as gguf.quants decodes it."""
    bc, bb = GGUF_BLOCK[fmt]
    c = np.arange(cols)
    blk, i = c // bc, c % bc
    base = blk * bb
    if fmt in ("q5_0", "q5_1"):
        qh0, qs0 = (2, 6) if fmt == "q5_0" else (4, 8)
        return base + qs0 + i % 16, np.where(i >= 16, 4, 0), base + qh0 + i // 8, i % 8
    if fmt in ("q4_k", "q5_k"):
        qs0 = 16 if fmt == "q4_k" else 48
        lo_b, lo_s = base + qs0 + 32 * (i // 64) + i % 32, np.where(i % 64 >= 32, 4, 0)
        if fmt == "q4_k":
            return lo_b, lo_s, None, None
        return lo_b, lo_s, base + 16 + i % 32, i // 32
    # q6_k: ql[128] qh[64] scales[16] d[2]
    h, r = i // 128, i % 128
    return (base + h * 64 + r % 64, np.where(r >= 64, 4, 0), base + 128 + h * 32 + r % 32, 2 * (r // 32))


def _unpack(rowbytes: np.ndarray, maps, nbits: int) -> np.ndarray:
    lo_b, lo_s, hi_b, hi_s = maps
    q = (rowbytes[:, lo_b] >> lo_s.astype(np.uint8)) & np.uint8(15)
    if hi_b is not None:
        q = q | (((rowbytes[:, hi_b] >> hi_s.astype(np.uint8)) & np.uint8((1 << nbits) - 1)) << np.uint8(4))
    return q


def _pack(out: np.ndarray, q: np.ndarray, maps, nbits: int) -> None:
    lo_b, lo_s, hi_b, hi_s = maps
    fields = [(lo_b, lo_s, q & np.uint8(15))]
    if hi_b is not None:
        fields.append((hi_b, hi_s, q >> np.uint8(4)))
    for byte, shift, val in fields:
        for s in np.unique(shift):
            sel = shift == s
            out[:, byte[sel]] |= (val[:, sel] << np.uint8(s)).astype(np.uint8)


def _scale_ranges(fmt: str):
    """Byte ranges of a GGUF block that become the scales row, and (q6_k) the quants-row int8 scales."""
    return {"q5_0": (0, 2), "q5_1": (0, 4), "q4_k": (0, 16), "q5_k": (0, 16), "q6_k": (208, 210)}[fmt]


def gguf_blocks(raw: np.ndarray, fmt: str, rows: int, cols: int, block: tuple[int, int]) -> np.ndarray:
    """A [rows, cols] tensor's GGUF bytes as [rows, blocks per row, bytes per block] uint8, refused with one
    line when the rows are not whole blocks or the bytes are not what the shape needs (truncated)."""
    bc, bb = block
    if cols % bc:
        raise VkharpError(f"{fmt} needs the column count to be a multiple of {bc}, got {cols}")
    nblk = cols // bc
    data = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if data.size != rows * nblk * bb:
        raise VkharpError(f"{fmt} data for [{rows}, {cols}] must be {rows * nblk * bb} bytes "
                          f"({rows * nblk} blocks of {bb}), got {data.size}: a truncated or mis-shaped tensor")
    return data.reshape(rows, nblk, bb)


def from_gguf(raw: np.ndarray, fmt: str, rows: int, cols: int):
    """(qs uint32 [rows, words], scales [rows, n]) from GGUF blocks of a [rows, cols] tensor."""
    blocks = gguf_blocks(raw, fmt, rows, cols, GGUF_BLOCK[fmt])
    rb = blocks.reshape(rows, -1)
    nbits = HIGH_BITS[fmt]
    q = _unpack(rb, _gguf(fmt, cols), nbits)
    wpr = words_per_row(fmt, cols)
    qbytes = np.zeros((rows, wpr * 4), np.uint8)
    _pack(qbytes, q, _ours(fmt, cols), nbits)
    if fmt == "q6_k":
        nb = cols // 32
        qbytes[:, nb * 24:] = blocks[:, :, 192:208].reshape(rows, -1)
    s0, s1 = _scale_ranges(fmt)
    n, dt = scale_layout(fmt, cols)
    scales = np.ascontiguousarray(blocks[:, :, s0:s1]).reshape(rows, -1).view(dt).reshape(rows, n)
    return qbytes.view(np.uint32), scales


def to_gguf(qs: np.ndarray, scales: np.ndarray, fmt: str, rows: int, cols: int) -> np.ndarray:
    """Inverse of from_gguf: [rows, row_bytes] uint8 of GGUF blocks."""
    bc, bb = GGUF_BLOCK[fmt]
    nblk, nbits = cols // bc, HIGH_BITS[fmt]
    qbytes = np.ascontiguousarray(qs).view(np.uint8).reshape(rows, -1)
    q = _unpack(qbytes, _ours(fmt, cols), nbits)
    out = np.zeros((rows, nblk * bb), np.uint8)
    _pack(out, q, _gguf(fmt, cols), nbits)
    blocks = out.reshape(rows, nblk, bb)
    s0, s1 = _scale_ranges(fmt)
    blocks[:, :, s0:s1] = np.ascontiguousarray(scales).view(np.uint8).reshape(rows, nblk, s1 - s0)
    if fmt == "q6_k":
        blocks[:, :, 192:208] = qbytes[:, (cols // 32) * 24:].reshape(rows, nblk, 16)
    return out


def _k_scale_min(head: np.ndarray):
    """6-bit scales and mins [.., 8] from the 12 packed bytes (head bytes 4..15), as ggml unpacks them."""
    b = head[..., 4:16].astype(np.uint32)
    d, m, md = b[..., 0:4], b[..., 4:8], b[..., 8:12]
    sc = np.concatenate([d & 63, (md & 15) | ((d >> 6) << 4)], axis=-1)
    mn = np.concatenate([m & 63, (md >> 4) | ((m >> 6) << 4)], axis=-1)
    return sc, mn


def dequantize(qs: np.ndarray, scales: np.ndarray, fmt: str, rows: int, cols: int) -> np.ndarray:
    """float32 [rows, cols], bit-identical to gguf.quants.dequantize of the same blocks."""
    nbits = HIGH_BITS[fmt]
    qbytes = np.ascontiguousarray(qs).view(np.uint8).reshape(rows, -1)
    q = _unpack(qbytes, _ours(fmt, cols), nbits).astype(np.float32)
    nb, ns = cols // 32, cols // SUPER
    if fmt == "q5_0":
        d = np.ascontiguousarray(scales).view(np.float16).astype(np.float32).reshape(rows, nb, 1)
        return (d * (q.reshape(rows, nb, 32) - np.float32(16))).reshape(rows, cols)
    if fmt == "q5_1":
        dm = np.ascontiguousarray(scales).view(np.float16).astype(np.float32).reshape(rows, nb, 2)
        return (dm[:, :, 0:1] * q.reshape(rows, nb, 32) + dm[:, :, 1:2]).reshape(rows, cols)
    if fmt in ("q4_k", "q5_k"):
        head = np.ascontiguousarray(scales).view(np.uint8).reshape(rows, ns, 16)
        dd = head[..., 0:4].copy().view(np.float16).astype(np.float32)          # [rows, ns, 2]
        sc, mn = _k_scale_min(head)
        d = (dd[..., 0:1] * sc.astype(np.float32)).reshape(rows, nb, 1)
        dm = (dd[..., 1:2] * mn.astype(np.float32)).reshape(rows, nb, 1)
        return (d * q.reshape(rows, nb, 32) - dm).reshape(rows, cols)
    d = np.ascontiguousarray(scales).view(np.float16).astype(np.float32).reshape(rows, ns, 1)
    sc = qbytes[:, nb * 24:].view(np.int8).astype(np.float32).reshape(rows, ns, 16)
    d = (d * sc).reshape(rows, cols // 16, 1)
    return (d * (q.reshape(rows, cols // 16, 16) - np.float32(32))).reshape(rows, cols)


# --- simple quantizers for the k-quants (gguf has none) --------------------------------------------

def _f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16)


def quantize_k(w: np.ndarray, fmt: str) -> np.ndarray:
    """GGUF blocks [rows, row_bytes] for q4_k / q5_k / q6_k: a plain min-max (q4_k, q5_k) or abs-max
    (q6_k) fit per sub-block, then scales rounded to the super-block's 6-bit / int8 grid. Not
    llama.cpp's search-based quantizer (its error is somewhat larger); the blocks are valid GGUF."""
    rows, cols = w.shape
    if cols % SUPER:
        raise VkharpError(f"{fmt} needs the column count to be a multiple of {SUPER}, got {cols}")
    ns = cols // SUPER
    x = w.astype(np.float32).reshape(rows * ns, SUPER)
    n = x.shape[0]
    if fmt == "q6_k":
        sub = x.reshape(n, 16, 16)
        amax = np.abs(sub).max(-1)
        scale = amax / 31.0
        d = _f16(scale.max(-1) / 127.0)
        df = d.astype(np.float32)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            sc = np.where(df > 0, np.rint(scale / df), 0).clip(-128, 127).astype(np.int8)
            eff = (df * sc.astype(np.float32))[..., None]
            q = np.where(eff > 0, np.rint(sub / eff), 0).clip(-32, 31).astype(np.int16) + 32
        q = q.reshape(n, SUPER).astype(np.uint8)
        out = np.zeros((n, 210), np.uint8)
        _pack(out, q, _gguf("q6_k", SUPER), 2)
        out[:, 192:208] = sc.view(np.uint8)
        out[:, 208:210] = d.reshape(n, 1).view(np.uint8)
        return out.reshape(rows, ns * 210)
    levels = 15 if fmt == "q4_k" else 31
    sub = x.reshape(n, 8, 32)
    lo = np.minimum(sub.min(-1), 0.0)
    hi = np.maximum(sub.max(-1), 0.0)
    scale, mins = (hi - lo) / levels, -lo
    d, dmin = _f16(scale.max(-1) / 63.0), _f16(mins.max(-1) / 63.0)
    df, dmf = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df > 0, np.rint(scale / df), 0).clip(0, 63).astype(np.uint8)
        mn = np.where(dmf > 0, np.rint(mins / dmf), 0).clip(0, 63).astype(np.uint8)
        es = (df * sc.astype(np.float32))[..., None]
        em = (dmf * mn.astype(np.float32))[..., None]
        q = np.where(es > 0, np.rint((sub + em) / es), 0).clip(0, levels).astype(np.uint8).reshape(n, SUPER)
    bb = GGUF_BLOCK[fmt][1]
    out = np.zeros((n, bb), np.uint8)
    _pack(out, q, _gguf(fmt, SUPER), HIGH_BITS[fmt])
    out[:, 0:2] = d.reshape(n, 1).view(np.uint8)
    out[:, 2:4] = dmin.reshape(n, 1).view(np.uint8)
    s, m = sc.astype(np.uint8), mn.astype(np.uint8)
    out[:, 4:8] = (s[:, :4] & 63) | ((s[:, 4:] >> 4) << 6)
    out[:, 8:12] = (m[:, :4] & 63) | ((m[:, 4:] >> 4) << 6)
    out[:, 12:16] = (s[:, 4:] & 15) | ((m[:, 4:] & 15) << 4)
    return out.reshape(rows, ns * bb)
