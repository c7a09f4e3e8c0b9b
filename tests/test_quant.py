"""engine/quant.py: our GPU layout decodes exactly as GGUF's definitions (gguf's numpy dequantizer)."""
import numpy as np
import pytest
from gguf.quants import dequantize as gguf_dequantize, quantize as gguf_quantize

from engine import quant
from engine.errors import VkharpError


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0", "q4_1"])
def test_repack_is_lossless(rng, fmt):
    w = rng.standard_normal((7, 96)).astype(np.float32)
    raw = gguf_quantize(w, quant._gguf_type(fmt))
    packed = quant.from_gguf_blocks(raw, fmt, 7, 96)
    np.testing.assert_array_equal(quant.dequantize(packed), gguf_dequantize(raw, quant._gguf_type(fmt)))
    np.testing.assert_array_equal(quant.to_gguf_blocks(packed), raw)


@pytest.mark.parametrize("fmt,tol", [("f32", 0), ("f16", 1e-3), ("q8_0", 1e-2), ("q4_0", 0.2), ("q4_1", 0.15)])
def test_quantize_round_trip(rng, fmt, tol):
    # Error bounds: half an f16 ulp (~5e-4 relative); q8_0 step = max/127; q4 steps = max/8, range/15.
    w = rng.standard_normal((5, 64)).astype(np.float32)
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
        quant.quantize(np.zeros((2, 32), np.float32), "q5_k")
    with pytest.raises(VkharpError, match="multiple of 32"):
        quant.quantize(np.zeros((2, 33), np.float32), "q8_0")
    with pytest.raises(VkharpError, match="2-D"):
        quant.quantize(np.zeros(32, np.float32), "q8_0")
