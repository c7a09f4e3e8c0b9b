"""engine/quant.py: our GPU layout decodes exactly as GGUF's definitions (gguf's numpy dequantizer)."""
import numpy as np
import pytest
from gguf.quants import dequantize as gguf_dequantize, quantize as gguf_quantize

from engine import quant
from engine.errors import VkharpError


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1"])
def test_repack_is_lossless(rng, fmt):
    w = rng.standard_normal((7, 96)).astype(np.float32)
    raw = gguf_quantize(w, quant._gguf_type(fmt))
    packed = quant.from_gguf_blocks(raw, fmt, 7, 96)
    np.testing.assert_array_equal(quant.dequantize(packed), gguf_dequantize(raw, quant._gguf_type(fmt)))
    np.testing.assert_array_equal(quant.to_gguf_blocks(packed), raw)


@pytest.mark.parametrize("fmt,tol", [("f32", 0), ("f16", 1e-3), ("q8_0", 1e-2), ("q4_0", 0.2), ("q4_1", 0.15),
                                     ("q5_0", 0.1), ("q5_1", 0.08), ("q4_k", 0.2), ("q5_k", 0.1), ("q6_k", 0.05),
                                     ("iq4_nl", 0.1), ("iq4_xs", 0.15), ("q2_k", 0.45), ("q3_k", 0.3)])
def test_quantize_round_trip(rng, fmt, tol):
    # Error bounds: half an f16 ulp (~5e-4 relative); q8_0 step = max/127; q4 steps = max/8, range/15;
    # q5: max/16, range/31; k-quants: the sub-block step (range/15, range/31, max/31) plus the
    # rounding of the sub-block scale to the super-block's 6-bit (8-bit for q6_k) grid; iq4_nl: half
    # the widest gap of its table (24 of 127: 113 - 89) times d = max/127, so < 12/127 of the max;
    # iq4_xs: the same plus the rounding of each sub-block's d to the super-block's 6-bit grid (half a
    # step of max/(127*32) on a code of up to 127: < 2/127 of the max more); q2_k: half its step
    # range/3 of 16 weights (range <= 2 max: <= 1/3 of the max) plus the rounding of the sub-block
    # scale and min to the 4-bit grids (half a step each: 2max/(3*15*2) on q <= 3 and max/(15*2));
    # q3_k: codes -4..3 with the largest |w| at -4, so the other extreme clips by up to one step
    # (1/4 of the max) plus the 6-bit rounding of the sub-block scale (half of max/(4*32) on |q| <= 4).
    w = rng.standard_normal((5, 512)).astype(np.float32)
    back = quant.dequantize(quant.quantize(w, fmt))
    err = np.abs(back - w).max() / np.abs(w).max()
    assert err <= tol
    if fmt != "f32":
        assert err > 0  # really quantized


def test_odd_width_f16_pads():
    w = np.arange(15, dtype=np.float32).reshape(3, 5)
    p = quant.quantize(w, "f16")
    assert p.qs.shape == (3, 3)
    np.testing.assert_array_equal(quant.dequantize(p), w)


def test_bad_inputs():
    with pytest.raises(VkharpError, match="unknown weight format"):
        quant.quantize(np.zeros((2, 32), np.float32), "q7_k")
    with pytest.raises(VkharpError, match="multiple of 256"):
        quant.quantize(np.zeros((2, 288), np.float32), "q4_k")
    with pytest.raises(VkharpError, match="multiple of 32"):
        quant.quantize(np.zeros((2, 33), np.float32), "q8_0")
    with pytest.raises(VkharpError, match="2-D"):
        quant.quantize(np.zeros(32, np.float32), "q8_0")


KQ = ["q5_0", "q5_1", "q4_k", "q5_k", "q6_k"]


def _gguf_blocks(rng, fmt, rows, cols):
    """GGUF blocks of fmt: gguf's own quantizer where it has one, else random bytes with finite f16
    scales (every bit pattern of the quants and 6-bit/int8 scales is a valid block)."""
    if fmt in ("q5_0", "q5_1"):
        return gguf_quantize(rng.standard_normal((rows, cols)).astype(np.float32), quant._gguf_type(fmt))
    from engine.iquant import GGUF_BLOCK as I_BLOCK
    from engine.kquant import GGUF_BLOCK
    from engine.kquant23 import GGUF_BLOCK as K23_BLOCK
    bc, bb = {**GGUF_BLOCK, **I_BLOCK, **K23_BLOCK}[fmt]
    raw = rng.integers(0, 256, (rows, cols // bc, bb), dtype=np.uint8)
    halves = {"q6_k": [(208, 210)], "q2_k": [(80, 82), (82, 84)], "q3_k": [(108, 110)]}.get(
        fmt, [(0, 2)] if fmt in I_BLOCK else [(0, 2), (2, 4)])
    for a, b in halves:   # small finite f16 scales
        raw[:, :, a:b] = (rng.uniform(0.001, 0.1, (rows, cols // bc)).astype(np.float16)
                          * rng.choice([-1, 1], (rows, cols // bc))).astype(np.float16).view(np.uint8).reshape(rows, -1, 2)
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("fmt", KQ)
@pytest.mark.parametrize("rows,cols", [(7, 256), (3, 768)])
def test_kquant_repack_bit_identical_to_gguf(rng, fmt, rows, cols):
    """Arbitrary valid GGUF blocks (all high bits, all 6-bit scale/min codes, negative int8 scales)
    repack losslessly into our layout, and our decoder gives gguf's floats bit for bit."""
    raw = _gguf_blocks(rng, fmt, rows, cols)
    packed = quant.from_gguf_blocks(raw, fmt, rows, cols)
    assert packed.nbytes == raw.nbytes + (0 if fmt not in ("q5_0", "q5_1") else 4 * rows * (-(-cols // 128) * 4 - cols // 32))
    want = gguf_dequantize(raw, quant._gguf_type(fmt)).reshape(rows, cols)
    np.testing.assert_array_equal(quant.dequantize(packed), want)
    np.testing.assert_array_equal(quant.to_gguf_blocks(packed), raw)


@pytest.mark.parametrize("fmt", ["q4_k", "q5_k", "q6_k"])
def test_kquant_quantizer_writes_valid_blocks(rng, fmt):
    """Our simple k-quant quantizer's blocks decode in gguf's dequantizer to what our decoder gives."""
    w = rng.standard_normal((4, 512)).astype(np.float32)
    packed = quant.quantize(w, fmt)
    raw = quant.to_gguf_blocks(packed)
    np.testing.assert_array_equal(gguf_dequantize(raw, quant._gguf_type(fmt)).reshape(4, 512), quant.dequantize(packed))


IQ = ["iq4_nl", "iq4_xs"]


@pytest.mark.parametrize("fmt", IQ)
@pytest.mark.parametrize("rows,cols", [(7, 256), (3, 768)])
def test_iq4_repack_bit_identical_to_gguf(rng, fmt, rows, cols):
    """Arbitrary valid iq4 blocks (every code, every 6-bit sub-block scale, both signs of d) are kept
    byte for byte (the same size) and decode to gguf's floats bit for bit (float32 bits compared, so
    -0.0 and 0.0 differ)."""
    raw = _gguf_blocks(rng, fmt, rows, cols)
    packed = quant.from_gguf_blocks(raw, fmt, rows, cols)
    assert packed.nbytes == raw.nbytes
    want = gguf_dequantize(raw, quant._gguf_type(fmt)).reshape(rows, cols)
    np.testing.assert_array_equal(quant.dequantize(packed).view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(quant.to_gguf_blocks(packed), raw)


@pytest.mark.parametrize("fmt", IQ)
def test_iq4_quantizer_writes_valid_blocks(rng, fmt):
    """gguf has no iq4 quantizer; ours writes blocks that gguf decodes to what our decoder gives."""
    w = rng.standard_normal((4, 512)).astype(np.float32)
    packed = quant.quantize(w, fmt)
    raw = quant.to_gguf_blocks(packed)
    np.testing.assert_array_equal(gguf_dequantize(raw, quant._gguf_type(fmt)).reshape(4, 512), quant.dequantize(packed))


def test_iq4_is_not_a_convert_dtype():
    """`vkharp convert --dtype` offers only what gguf (or our k-quant quantizer) writes."""
    assert set(IQ) <= set(quant.FORMATS) and not set(IQ) & set(quant.DTYPES)


K23 = ["q2_k", "q3_k"]


@pytest.mark.parametrize("fmt", K23)
@pytest.mark.parametrize("rows,cols", [(7, 256), (3, 768), (5, 512)])
def test_k23_repack_bit_identical_to_gguf(rng, fmt, rows, cols):
    """Arbitrary valid Q2_K / Q3_K super-blocks (every code and high bit, every 4-bit scale and min or
    6-bit signed scale, both signs of d and dmin) are kept byte for byte (the same size: q3_k's 14-byte
    scale heads of odd super-blocks start mid-word) and decode to gguf's floats bit for bit."""
    raw = _gguf_blocks(rng, fmt, rows, cols)
    packed = quant.from_gguf_blocks(raw, fmt, rows, cols)
    assert packed.nbytes == raw.nbytes and packed.qs.shape == (rows, quant.words_per_row(fmt, cols))
    want = gguf_dequantize(raw, quant._gguf_type(fmt)).reshape(rows, cols)
    np.testing.assert_array_equal(quant.dequantize(packed).view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(quant.to_gguf_blocks(packed), raw)
    for r0, r1 in ((1, rows), (rows - 1, rows)):   # a row slice (a weight part) decodes the same rows
        np.testing.assert_array_equal(quant.dequantize(packed.rows_slice(r0, r1)), want[r0:r1])


@pytest.mark.parametrize("fmt", K23)
def test_k23_quantizer_writes_valid_blocks(rng, fmt):
    """gguf has no Q2_K / Q3_K quantizer; ours writes blocks that gguf decodes to what our decoder gives."""
    w = rng.standard_normal((4, 512)).astype(np.float32)
    packed = quant.quantize(w, fmt)
    raw = quant.to_gguf_blocks(packed)
    np.testing.assert_array_equal(gguf_dequantize(raw, quant._gguf_type(fmt)).reshape(4, 512), quant.dequantize(packed))


def test_k23_is_not_a_convert_dtype():
    """Kept from GGUF files, never written by `vkharp convert --dtype` (the quantizer is for tests)."""
    assert set(K23) <= set(quant.FORMATS) and not set(K23) & set(quant.DTYPES)


@pytest.mark.parametrize("fmt", KQ + IQ + K23)
def test_truncated_blocks_are_refused(rng, fmt):
    raw = _gguf_blocks(rng, fmt, 2, 256).reshape(-1)
    with pytest.raises(VkharpError, match="truncated"):
        quant.from_gguf_blocks(raw[:-1], fmt, 2, 256)
    with pytest.raises(VkharpError, match="truncated"):
        quant.from_gguf_blocks(raw, fmt, 3, 256)   # a shape the data does not cover
