"""The matrix kernels' texel-buffer twins (`_tx`: quants, scales and x fetched from texel buffers,
tools/kp/patches/0008; decode's default on CPU devices) against the same tilings reading storage
buffers. Only the loads differ, so the outputs must be the same bits, in every output mode and for
every format; test_matmul.py compares the defaults with the numpy twins."""
from dataclasses import replace

import numpy as np
import pytest

from engine import quant
from engine.ops.matmul import Norm, Tiling, choose_tiling, matmul, matvec
from engine.weights import upload_weight
from test_matmul import SHAPES
from util import rand

RUN_FORMATS = [f for f in quant.FORMATS if SHAPES[f][1][1] % 32 == 0]


def _labels(rec):
    return [s.label for s in rec.steps if s.kind == "dispatch"]


def _product(device, op, dw, x, tiling, **kw):
    n = x.shape[0] if x.ndim == 2 else 1
    rows = dw.rows // 2 if kw.get("glu") else dw.rows
    out = device.buffer((n, rows))
    if kw.pop("residual_from", None) is not None:
        out.write(np.ones((n, rows), np.float32))
        kw["residual"] = True
    rec = device.recorder()
    op(rec, out, dw, device.buffer(x), tiling=tiling, **kw)
    names = _labels(rec)
    rec.finish().run()
    return out.read(), names


@pytest.mark.parametrize("fmt", RUN_FORMATS)
def test_texel_matvec_equals_storage_matvec(device, rng, fmt):
    rows, cols = SHAPES[fmt][1]
    packed = quant.quantize(rand(rng, 2 * rows, cols), fmt)
    q_row, s_row = packed.qs.shape[1] * 4, 0 if packed.scales is None else packed.scales[0].nbytes
    dw = upload_weight(device, packed, "w", max_bytes=(2 * rows // 3) * max(q_row, s_row) + 4)   # several parts
    nw = device.buffer((1.0 + 0.5 * rand(rng, 1, cols)).astype(np.float32), kind="const")
    bias = device.buffer(rand(rng, 2 * rows), kind="const")
    t = choose_tiling(device.info, fmt, 2 * rows, cols, 1)
    x = 2.0 * rand(rng, cols)
    for kw in (dict(), dict(bias=bias), dict(norm=Norm(nw, 1e-5)), dict(residual_from=1)):
        got, names = _product(device, matvec, dw, x, replace(t, texel=True), **kw)
        want, plain = _product(device, matvec, dw, x, replace(t, texel=False), **kw)
        assert all(n.endswith("_tx") for n in names) and not any(n.endswith("_tx") for n in plain), (names, plain)
        assert len(names) >= 2 and np.abs(got).max() > 0       # several weight parts, real outputs
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fmt", ["q4_1", "q8_0"])
def test_texel_glu_and_prefill_tiles_equal_storage(device, rng, fmt):
    """The GLU epilogue (decode's gate_up) and token-tiled matmuls (column lanes meeting in shared
    memory, one lane per row holding x whole, and the CPU default's streaming nest) through texel
    buffers."""
    f, cols = 27, 320
    dw = upload_weight(device, quant.quantize(rand(rng, 2 * f, cols), fmt), "w_gate_up")
    nw = device.buffer((1.0 + 0.5 * rand(rng, 1, cols)).astype(np.float32), kind="const")
    x = rand(rng, cols)
    t = replace(choose_tiling(device.info, fmt, 2 * f, cols, 1), rows_per_lane=2)
    got, _ = _product(device, matvec, dw, x, replace(t, texel=True), glu="silu", norm=Norm(nw, 1e-5))
    want, _ = _product(device, matvec, dw, x, replace(t, texel=False), glu="silu", norm=Norm(nw, 1e-5))
    np.testing.assert_array_equal(got, want)
    xs = rand(rng, 5, cols)
    for tm in (Tiling(2, 3, 3, 4, 2), Tiling(2, 1, 8, 6, 5), Tiling(1, 1, 8, 5, 5, stream_rows=2)):
        got, names = _product(device, matmul, dw, xs, replace(tm, texel=True))
        want, _ = _product(device, matmul, dw, xs, tm)
        assert names[0].endswith("_tx")
        np.testing.assert_array_equal(got, want)


def test_texel_defaults_and_the_fallback(device, rng):
    """CPU devices run every product through texel buffers (decode's one row, HARP's two, prefill's
    token tiles); a weight part too large for one texel view falls back to storage buffers, same results."""
    packed = quant.quantize(rand(rng, 45, 288), "q4_1")
    dw = upload_weight(device, packed, "w")
    x = rand(rng, 288)
    cpu = device.info.type == "cpu"
    assert choose_tiling(device.info, "q4_1", 45, 288, 1).texel == cpu
    assert choose_tiling(device.info, "q4_1", 45, 288, 2).texel == cpu      # HARP's two streams
    assert choose_tiling(device.info, "q4_1", 45, 288, 7).texel == cpu      # prefill
    want, names = _product(device, matvec, dw, x, None)
    assert names[0].endswith("_tx") == cpu
    limit = device.info.max_texel_elements
    device.info.max_texel_elements = dw.parts[0].qs.size // 4 - 1
    try:
        got, names = _product(device, matvec, dw, x, None)
    finally:
        device.info.max_texel_elements = limit
    assert not names[0].endswith("_tx")
    np.testing.assert_array_equal(got, want)
