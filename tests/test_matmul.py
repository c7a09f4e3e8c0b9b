"""shaders/matvec.comp and shaders/matmul.comp against engine/reference/matmul.py.

Tolerance: the twin computes in float64 on the *same decoded weights*, so the only error is the
shader's float32 arithmetic: `cols` products summed in a different order (per lane, per block, then
across lanes), each addition rounding by at most 2^-24 relative. For random-sign terms the rounding
errors add like a random walk, so ‖err‖/‖ref‖ ≈ 2^-24·sqrt(cols) ≈ 6e-8·sqrt(cols); the worst case is
2^-24·cols. TOL_PER_SQRT_COL = 1e-6 per sqrt(cols) leaves a 16x margin over the random walk (and stays
far below a real bug: a missing or misplaced 32-column block changes the result by >1e-2).
The q4 kernels also scale activations by powers of two (exact) and q4_0 subtracts 8·sum(x) per block
(one more rounding per block), both covered by the same bound. iq4_nl multiplies x by its codes' int8
table values (exact floats) and the block sum by d, as q8_0: the same bound. q2_k and q3_k sum each
16-weight sub-block's q·x (exact small integers times x, x pre-scaled by powers of two) and subtract
dmin·m·sum(x) (q2_k) or 4·sum(x) (q3_k) per sub-block, as q6_k subtracts 32·sum(x): one or two more
roundings per 16 weights of terms no larger than the sum itself, covered by the same bound.
"""
import math
from dataclasses import replace

import numpy as np
import pytest

from engine import quant
from engine.errors import VkharpError
from engine.ops.matmul import RUNS, Tiling, choose_tiling, matmul, matvec
from engine.reference import matmul as ref
from engine.weights import DeviceWeight, upload_stacked, upload_weight
from util import rand, rel_err

TOL_PER_SQRT_COL = 1e-6


def tol(cols):
    return TOL_PER_SQRT_COL * math.sqrt(cols)


def _weight(device, rng, fmt, rows, cols, max_bytes=None):
    packed = quant.quantize(rand(rng, rows, cols), fmt)
    return packed, upload_weight(device, packed, f"w_{fmt}", max_bytes=max_bytes)


def _run(device, op, dw, x, bias, tiling=None):
    n = 1 if op is matvec else x.shape[0]
    out = device.buffer((n, dw.rows))
    bb = device.buffer(bias, kind="const") if bias is not None else None
    rec = device.recorder()
    op(rec, out, dw, device.buffer(x), bb, tiling=tiling)
    rec.finish().run()
    return out.read().reshape(n, dw.rows)


def _check(got, want, cols):
    err = rel_err(got, want)
    assert err < tol(cols), f"relative error {err:.2e} >= {tol(cols):.2e}"
    # and no single output may be far off (catches one wrong row among many right ones)
    worst = np.max(np.abs(got - want) / (np.abs(want) + np.linalg.norm(want) / math.sqrt(want.size)))
    assert worst < 20 * tol(cols), f"worst element error {worst:.2e}"


# Shapes: rows not a multiple of anything; cols odd for f32/f16 (the scalar `_any` variant) and
# whole 32-blocks otherwise; q formats: multiples of 32 that are not multiples of 64 or 128 (the
# 5-bit formats' high-bit tail then ends in a partly used uvec4); k-quants, iq4_xs: 1 and 3 super-blocks.
SHAPES = {"f32": [(37, 101), (45, 96)], "f16": [(37, 101), (45, 160)],
          "q8_0": [(37, 96), (45, 288)], "q4_0": [(37, 96), (45, 288)], "q4_1": [(37, 96), (45, 288)],
          "q5_0": [(37, 96), (45, 288)], "q5_1": [(37, 96), (45, 288)],
          "q4_k": [(37, 256), (45, 768)], "q5_k": [(37, 256), (45, 768)], "q6_k": [(37, 256), (45, 768)],
          "iq4_nl": [(37, 96), (45, 288)], "iq4_xs": [(37, 256), (45, 768)],
          "q2_k": [(37, 256), (45, 768)], "q3_k": [(37, 256), (45, 768)]}


@pytest.mark.parametrize("fmt", quant.FORMATS)
@pytest.mark.parametrize("with_bias", [False, True])
def test_matvec_default_tiling(device, rng, fmt, with_bias):
    for rows, cols in SHAPES[fmt]:
        packed, dw = _weight(device, rng, fmt, rows, cols)
        x = rand(rng, cols)
        bias = rand(rng, rows) if with_bias else None
        _check(_run(device, matvec, dw, x, bias)[0], ref.matvec(packed, x, bias), cols)


@pytest.mark.parametrize("fmt", quant.FORMATS)
@pytest.mark.parametrize("with_bias", [False, True])
def test_matmul_default_tiling(device, rng, fmt, with_bias):
    rows, cols = SHAPES[fmt][-1]
    packed, dw = _weight(device, rng, fmt, rows, cols)
    x = rand(rng, 7, cols)
    bias = rand(rng, rows) if with_bias else None
    _check(_run(device, matmul, dw, x, bias), ref.matmul(packed, x, bias), cols)


# Explicit tilings: every RUN of every format; column lanes that split rows exactly, with spare
# runs (CL * CPL > runs per row) and with one lane per row; row lanes / rows per lane that do not
# divide the rows; work groups that are and are not multiples of 8; token tiles that do not divide N;
# a reduction every row (rows_per_sum=1). Registers per lane (TN x blocks) stay small: lavapipe's
# compile time grows with their square.
TILINGS = [
    # (fmt, cols, Tiling(run, col_lanes, row_lanes, rows_per_lane, tokens[, rows_per_sum]))
    ("f32", 96, Tiling(1, 1, 8, 3, 1)), ("f32", 160, Tiling(1, 2, 3, 5, 2)),
    ("f16", 160, Tiling(1, 5, 8, 2, 3)), ("f16", 96, Tiling(1, 2, 1, 7, 4, 1)),
    ("q8_0", 96, Tiling(1, 3, 8, 4, 2)), ("q8_0", 288, Tiling(1, 4, 2, 5, 1)),
    ("q8_0", 320, Tiling(2, 5, 8, 2, 3)), ("q8_0", 384, Tiling(4, 2, 4, 3, 1, 1)),
    ("q8_0", 768, Tiling(8, 3, 8, 6, 1)),
    ("q4_0", 96, Tiling(1, 2, 8, 3, 1)), ("q4_0", 320, Tiling(2, 3, 8, 4, 2)),
    ("q4_0", 384, Tiling(4, 3, 8, 6, 2)), ("q4_0", 768, Tiling(8, 3, 8, 2, 1)),
    ("q4_1", 96, Tiling(1, 3, 1, 9, 1)), ("q4_1", 288, Tiling(1, 9, 8, 2, 2)),
    ("q4_1", 320, Tiling(2, 5, 8, 3, 3)), ("q4_1", 384, Tiling(4, 3, 8, 4, 1)),
    ("q4_1", 768, Tiling(4, 4, 2, 5, 1)),
    # 5-bit and k-quant formats: every RUN (k-quants: runs inside one super-block, 8 = a whole one),
    # high-bit words shared by 2 (q6_k) or 4 (q5) blocks of a run, spare runs, token tiles.
    ("q5_0", 96, Tiling(1, 3, 8, 4, 2)), ("q5_0", 320, Tiling(2, 5, 8, 2, 3)), ("q5_0", 384, Tiling(4, 2, 4, 3, 1, 1)),
    ("q5_0", 768, Tiling(8, 2, 4, 3, 2)),
    ("q5_1", 288, Tiling(1, 9, 8, 2, 2)), ("q5_1", 320, Tiling(2, 3, 8, 3, 3)), ("q5_1", 640, Tiling(4, 2, 8, 4, 1)),
    ("q4_k", 256, Tiling(1, 3, 8, 3, 1)), ("q4_k", 512, Tiling(2, 3, 8, 4, 2)), ("q4_k", 768, Tiling(4, 4, 2, 5, 3)),
    ("q4_k", 768, Tiling(8, 2, 4, 3, 2)),
    ("q5_k", 256, Tiling(2, 2, 8, 3, 2)), ("q5_k", 512, Tiling(4, 3, 1, 9, 1)), ("q5_k", 768, Tiling(8, 3, 8, 2, 1)),
    ("q5_k", 768, Tiling(1, 7, 8, 2, 1, 1)),
    ("q6_k", 256, Tiling(1, 3, 8, 4, 2)), ("q6_k", 512, Tiling(2, 5, 8, 3, 3)), ("q6_k", 768, Tiling(4, 3, 8, 2, 1, 1)),
    ("q6_k", 768, Tiling(8, 2, 8, 3, 1)),
    # iq4_nl (q4_0's layout, codes through the 16-entry table): every RUN, spare runs, token tiles.
    ("iq4_nl", 96, Tiling(1, 2, 8, 3, 1)), ("iq4_nl", 320, Tiling(2, 3, 8, 4, 2)),
    ("iq4_nl", 384, Tiling(4, 3, 8, 6, 2)), ("iq4_nl", 768, Tiling(8, 3, 8, 2, 1, 1)),
    # iq4_xs (runs inside one super-block, its 8 sub-block scales from one uvec2): every RUN.
    ("iq4_xs", 256, Tiling(1, 3, 8, 3, 1)), ("iq4_xs", 512, Tiling(2, 3, 8, 4, 2)),
    ("iq4_xs", 768, Tiling(4, 4, 2, 5, 3)), ("iq4_xs", 768, Tiling(8, 2, 4, 3, 2, 1)),
    # q2_k, q3_k (2-bit words two blocks per uvec4, q3_k's high words four, runs inside one
    # super-block): every RUN, spare runs, one lane per row, token tiles, a reduction every row.
    ("q2_k", 256, Tiling(1, 3, 8, 3, 1)), ("q2_k", 512, Tiling(2, 3, 8, 4, 2)), ("q2_k", 768, Tiling(4, 4, 2, 5, 3)),
    ("q2_k", 768, Tiling(8, 1, 4, 3, 2, 1)),
    ("q3_k", 256, Tiling(1, 5, 8, 3, 2)), ("q3_k", 512, Tiling(2, 3, 1, 9, 1)), ("q3_k", 768, Tiling(4, 2, 8, 2, 3)),
    ("q3_k", 768, Tiling(8, 3, 4, 3, 1, 1)),
    # GPU subgroup tilings (`_sg`: subgroupAdd, then one partial per subgroup in shared memory): whole
    # groups of 1-3 subgroups on this device, spare lanes, several runs per lane, token tiles.
    ("f32", 160, Tiling(1, 8, 1, 3, 1, subgroup=True)), ("f16", 96, Tiling(1, 16, 1, 4, 3, subgroup=True)),
    ("q8_0", 320, Tiling(2, 8, 1, 5, 2, subgroup=True)), ("q4_0", 288, Tiling(1, 24, 1, 3, 1, 1, subgroup=True)),
    ("q4_1", 576, Tiling(2, 16, 1, 4, 4, subgroup=True)), ("q4_1", 1536, Tiling(2, 8, 1, 2, 3, subgroup=True)),
    ("q5_0", 288, Tiling(1, 24, 1, 3, 1, 1, subgroup=True)), ("q5_1", 320, Tiling(2, 8, 1, 5, 2, subgroup=True)),
    ("q4_k", 768, Tiling(2, 16, 1, 4, 3, subgroup=True)), ("q5_k", 512, Tiling(1, 8, 1, 3, 1, subgroup=True)),
    ("q6_k", 768, Tiling(2, 8, 1, 2, 3, subgroup=True)), ("q6_k", 1536, Tiling(1, 24, 1, 3, 1, 1, subgroup=True)),
    ("iq4_nl", 288, Tiling(1, 24, 1, 3, 1, 1, subgroup=True)), ("iq4_nl", 320, Tiling(2, 8, 1, 5, 2, subgroup=True)),
    ("iq4_xs", 768, Tiling(2, 16, 1, 4, 3, subgroup=True)), ("iq4_xs", 512, Tiling(1, 8, 1, 3, 1, 1, subgroup=True)),
    ("q2_k", 768, Tiling(2, 16, 1, 4, 3, subgroup=True)), ("q2_k", 512, Tiling(1, 8, 1, 3, 1, 1, subgroup=True)),
    ("q3_k", 768, Tiling(1, 24, 1, 3, 2, subgroup=True)), ("q3_k", 512, Tiling(2, 8, 1, 5, 1, subgroup=True)),
]


@pytest.mark.parametrize("fmt,cols,tiling", TILINGS, ids=[f"{f}-{c}-{t}" for f, c, t in TILINGS])
def test_explicit_tilings_on_parts(device, rng, fmt, cols, tiling):
    rows = 53
    packed = quant.quantize(rand(rng, rows, cols), fmt)
    # two parts (27 + 26 rows): each dispatch writes its own rows of the output
    q_row, s_row = packed.qs.shape[1] * 4, 0 if packed.scales is None else packed.scales[0].nbytes
    dw = upload_weight(device, packed, "w_parts", max_bytes=27 * max(q_row, s_row) + 4)
    assert [p.rows for p in dw.parts] == [27, 26]
    bias = rand(rng, rows)
    x1, xn = rand(rng, cols), rand(rng, 5, cols)
    _check(_run(device, matvec, dw, x1, None, tiling)[0], ref.matvec(packed, x1), cols)
    _check(_run(device, matmul, dw, xn, bias, tiling), ref.matmul(packed, xn, bias), cols)


# The streaming nest (stream_rows = XB > 0, CL = 1): the lane's rows XB at a time, x fetched run by run;
# odd rows per lane leave a short last round, and the output rows end inside a round.
STREAMING = [(f, 768, Tiling(1 if f in ("f32", "f16") else 2, 1, 8, 5, 3, stream_rows=2)) for f in quant.FORMATS]


@pytest.mark.parametrize("fmt,cols,tiling", STREAMING, ids=[f"{f}-{c}" for f, c, t in STREAMING])
def test_streaming_tilings_on_parts(device, rng, fmt, cols, tiling):
    """Against the twins on two parts, and the same bits as the preloading nest of the same tiling
    (the same operations per output in the same order)."""
    test_explicit_tilings_on_parts(device, rng, fmt, cols, tiling)
    packed, dw = _weight(device, rng, fmt, 53, cols)
    xn = rand(rng, 7, cols)
    np.testing.assert_array_equal(_run(device, matmul, dw, xn, None, tiling),
                                  _run(device, matmul, dw, xn, None, replace(tiling, stream_rows=0)))


RESIDUAL = [("f32", 101, None), ("q4_1", 288, None), ("q8_0", 320, Tiling(2, 8, 1, 5, 2, subgroup=True)),
            ("q4_0", 288, Tiling(1, 24, 1, 3, 1, 1, subgroup=True)), ("f16", 96, Tiling(1, 2, 3, 5, 2)),
            ("q5_0", 288, None), ("q5_0", 512, None), ("q5_1", 320, Tiling(2, 8, 1, 5, 2, subgroup=True)),
            ("q4_k", 512, None),
            ("q5_k", 768, Tiling(1, 24, 1, 3, 1, 1, subgroup=True)), ("q6_k", 512, None), ("iq4_nl", 288, None),
            ("iq4_xs", 512, None), ("q2_k", 512, None), ("q3_k", 768, Tiling(2, 8, 1, 5, 2, subgroup=True)),
            ("q6_k", 512, Tiling(2, 1, 8, 5, 2, stream_rows=4))]


@pytest.mark.parametrize("fmt,cols,tiling", RESIDUAL, ids=[f"{f}-{c}-{t}" for f, c, t in RESIDUAL])
def test_residual_epilogue_adds_in_place(device, rng, fmt, cols, tiling):
    """residual=True: out += x·Wᵀ in the epilogue (the residual stream's add fused away), on two
    weight parts; the same float addition as add(out, out, x·Wᵀ), so the twin is res + matmul."""
    rows = 53
    packed = quant.quantize(rand(rng, rows, cols), fmt)
    q_row, s_row = packed.qs.shape[1] * 4, 0 if packed.scales is None else packed.scales[0].nbytes
    dw = upload_weight(device, packed, "w_res", max_bytes=27 * max(q_row, s_row) + 4)
    for op, n in ((matvec, 1), (matmul, 5)):
        x, res = rand(rng, n, cols), rand(rng, n, rows)
        out = device.buffer(res)
        rec = device.recorder()
        op(rec, out, dw, device.buffer(x[0] if n == 1 else x), None, tiling=tiling, residual=True)
        rec.finish().run()
        want = res + ref.matmul(packed, x)
        _check(out.read().reshape(n, rows), want, cols)
    with pytest.raises(VkharpError, match="no bias form"):
        matvec(device.recorder(), device.buffer(rows), dw, device.buffer(cols), device.buffer(rows, kind="const"),
               residual=True)


NORMED = [("f32", 96, None), ("q4_1", 288, None), ("q8_0", 320, Tiling(2, 8, 1, 5, 2, subgroup=True)),
          ("q4_0", 288, Tiling(1, 24, 1, 3, 3, 1, subgroup=True)), ("f16", 160, Tiling(1, 5, 8, 2, 3)),
          ("q4_1", 576, Tiling(2, 3, 3, 4, 2)),
          ("q5_0", 320, None), ("q5_0", 768, None), ("q5_1", 288, Tiling(1, 24, 1, 3, 3, 1, subgroup=True)),
          ("q4_k", 768, None),
          ("q5_k", 512, Tiling(4, 3, 3, 4, 2)), ("q6_k", 768, Tiling(2, 8, 1, 5, 2, subgroup=True)),
          ("iq4_nl", 320, Tiling(2, 3, 3, 4, 2)), ("iq4_xs", 768, Tiling(2, 8, 1, 5, 2, subgroup=True)),
          ("q2_k", 768, Tiling(1, 24, 1, 3, 3, 1, subgroup=True)), ("q3_k", 512, Tiling(4, 2, 3, 4, 2)),
          ("q4_k", 768, Tiling(2, 1, 8, 3, 3, stream_rows=2))]


@pytest.mark.parametrize("fmt,cols,tiling", NORMED, ids=[f"{f}-{c}-{t}" for f, c, t in NORMED])
def test_folded_rmsnorm_prologue(device, rng, fmt, cols, tiling):
    """norm=Norm(w, eps, layer): matmul(rmsnorm(x, w[layer]), W) in one dispatch, each group computing
    the RMS itself; layer-stacked norm weights, two weight parts, a bias, matvec and a chunk of 5.
    Tolerance: the RMS sums squares in another order than the twin (float64), one more rounding of
    each normalised x: the same bound per sqrt(cols) as the products."""
    from engine.ops.matmul import Norm
    from engine.reference.norm import rmsnorm as ref_rmsnorm
    rows, layers, layer, eps = 53, 3, 2, 1e-5
    packed = quant.quantize(rand(rng, rows, cols), fmt)
    q_row, s_row = packed.qs.shape[1] * 4, 0 if packed.scales is None else packed.scales[0].nbytes
    dw = upload_weight(device, packed, "w_norm", max_bytes=27 * max(q_row, s_row) + 4)
    nw = (1.0 + 0.5 * rand(rng, layers, cols)).astype(np.float32)
    nwb, bias = device.buffer(nw, kind="const"), rand(rng, rows)
    for op, n in ((matvec, 1), (matmul, 5)):
        x = 3.0 * rand(rng, n, cols)
        out = device.buffer((n, rows))
        rec = device.recorder()
        op(rec, out, dw, device.buffer(x[0] if n == 1 else x), device.buffer(bias, kind="const"), tiling=tiling,
           norm=Norm(nwb, eps, layer))
        rec.finish().run()
        want = ref.matmul(packed, ref_rmsnorm(x, nw[layer], eps=eps), bias)
        _check(out.read().reshape(n, rows), want, cols)
    with pytest.raises(VkharpError, match="do not combine"):
        matvec(device.recorder(), device.buffer(rows), dw, device.buffer(cols), None, norm=Norm(nwb, eps),
               residual=True)
    with pytest.raises(VkharpError, match="no layer 3"):
        matvec(device.recorder(), device.buffer(rows), dw, device.buffer(cols), None, norm=Norm(nwb, eps, 3))


# The last four: Gemma-3-270M Q4_K_M's mix (q_proj / gate_proj Q5_0, o_proj Q4_K, down_proj Q6_K).
@pytest.mark.parametrize("fmt,rows,cols", [("q4_1", 300, 576), ("q8_0", 130, 1536), ("f16", 70, 1024),
                                           ("q5_0", 130, 640), ("q4_k", 70, 1024), ("q6_k", 70, 2048),
                                           ("q5_1", 50, 640), ("iq4_nl", 130, 640), ("iq4_xs", 70, 1024),
                                           ("q2_k", 70, 1024), ("q3_k", 130, 2048)])
def test_model_like_shapes_default_tiling(device, rng, fmt, rows, cols):
    packed, dw = _weight(device, rng, fmt, rows, cols)
    x, xn = rand(rng, cols), rand(rng, 9, cols)
    _check(_run(device, matvec, dw, x, None)[0], ref.matvec(packed, x), cols)
    _check(_run(device, matmul, dw, xn, None), ref.matmul(packed, xn), cols)


@pytest.mark.parametrize("fmt,split", [("q4_1", False), ("q8_0", True), ("f16", False)])
def test_layer_stacked_weights_share_a_pipeline(device, rng, fmt, split):
    """Layer l of a stacked weight (and of a stacked bias [L, rows]) via the per-dispatch offset;
    `split`: each layer split into two row parts instead of whole layers per buffer."""
    layers, rows, cols = 3, 29, 160
    packed = [quant.quantize(rand(rng, rows, cols), fmt) for _ in range(layers)]
    row_bytes = packed[0].qs.shape[1] * 4
    dw = upload_stacked(device, packed, layers, "stacked", max_bytes=(15 * row_bytes + 8) if split else None)
    assert len(dw.parts) == (2 * layers if split else 1)
    bias = rand(rng, layers, rows)
    bb = device.buffer(bias, kind="const")
    x1, xn = device.buffer(rand(rng, cols)), device.buffer(rand(rng, 4, cols))
    out1, outn = device.buffer(rows), device.buffer((4, rows))   # the same buffers for every layer
    for l in (1, 2):
        before = device.n_pipelines
        rec = device.recorder()
        matvec(rec, out1, dw, x1, bb, layer=l)
        matmul(rec, outn, dw, xn, bb, layer=l)
        rec.finish().run()
        if l == 2 and not split:   # whole layers share buffers: layer 2 reuses layer 1's pipelines
            assert device.n_pipelines == before
        _check(out1.read(), ref.matvec(packed[l], x1.read(), bias[l]), cols)
        _check(outn.read().reshape(4, rows), ref.matmul(packed[l], xn.read().reshape(4, cols), bias[l]), cols)


KQ_FORMATS = ("q5_0", "q5_1", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs", "q2_k", "q3_k")


@pytest.mark.parametrize("fmt", KQ_FORMATS)
def test_gpu_tilings_run_here(device, rng, fmt):
    """The tilings GPUs get by default (`_gpu_tiling`: subgroup teams; without subgroup arithmetic,
    column lanes meeting in shared memory), run on this device for decode and a prefill chunk."""
    from dataclasses import replace
    from engine.ops.matmul import _gpu_tiling
    rows, cols = 45, (768 if quant.block_cols(fmt) == 256 else 288)
    packed, dw = _weight(device, rng, fmt, rows, cols)
    for info in (replace(device.info, type="discrete"), replace(device.info, type="discrete", subgroup_ops=0)):
        for n in (1, 6):
            t = _gpu_tiling(info, fmt, cols // 32, n)
            assert t.subgroup == info.subgroup_arithmetic
            x = rand(rng, n, cols)
            op = matvec if n == 1 else matmul
            _check(_run(device, op, dw, x[0] if n == 1 else x, None, t).reshape(n, rows), ref.matmul(packed, x), cols)


def test_choose_tiling_is_valid_for_every_device_kind(device):
    """The CPU tuning and the plain GPU fallback both give tilings the launcher accepts."""
    from dataclasses import replace
    gpu = replace(device.info, type="discrete", subgroup_size=32, max_shared_memory=16384)
    wave64 = replace(gpu, subgroup_size=64)
    no_arith = replace(gpu, subgroup_ops=0)   # subgroup arithmetic is optional in Vulkan 1.1
    for info in (device.info, gpu, wave64, no_arith):
        for fmt in quant.FORMATS:
            for rows, cols in [(7, 96), (576, 576), (1536, 576), (576, 1536), (4096, 4096), (49152, 576)]:
                for ntok in (1, 64):
                    t = choose_tiling(info, fmt, rows, cols, ntok)
                    assert t.run == 0 or (t.run in RUNS[fmt] and cols // 32 % t.run == 0)
                    assert t.wg <= info.max_workgroup_invocations
                    if t.stream_rows:   # the streaming nest: a real loop over runs, XB rows unrolled
                        assert t.col_lanes == 1 and 1 <= t.stream_rows <= min(32, t.rows_per_lane)
                    else:
                        assert math.ceil(cols // 32 // max(t.run, 1) / t.col_lanes) <= 32
                    assert t.shared_bytes_per_row <= info.max_shared_memory   # one row of partial sums
                    if info.type != "cpu" and t.run:   # GPU tilings use whole subgroups
                        assert t.wg % info.subgroup_size == 0, (info.subgroup_size, t)
                        assert t.subgroup == info.subgroup_arithmetic


def test_bad_inputs_raise_clear_errors(device, rng):
    packed, dw = _weight(device, rng, "q4_1", 10, 64)
    rec = device.recorder()
    out, x = device.buffer(10), device.buffer(64)
    with pytest.raises(VkharpError, match="x has 63 values"):
        matvec(rec, out, dw, device.buffer(63), None)
    with pytest.raises(VkharpError, match="out has 11 values"):
        matvec(rec, device.buffer(11), dw, x, None)
    with pytest.raises(VkharpError, match="bias has 9 values"):
        matvec(rec, out, dw, x, device.buffer(9, kind="const"))
    with pytest.raises(VkharpError, match="not a multiple"):
        matmul(rec, device.buffer(20), dw, device.buffer(130), None)
    with pytest.raises(VkharpError, match="out has 10 values, expected 2"):
        matmul(rec, out, dw, device.buffer(128), None)
    with pytest.raises(VkharpError, match="must be f32"):
        matvec(rec, out, dw, device.buffer(64, np.uint32), None)
    bogus = DeviceWeight("q7_k", dw.rows, dw.cols, dw.parts, "bogus")
    with pytest.raises(VkharpError, match="unknown weight format 'q7_k'"):
        matvec(rec, out, bogus, x, None)
    with pytest.raises(VkharpError, match="RUN=8 is not available for q4_1"):
        matvec(rec, out, dw, x, None, tiling=Tiling(8, 1, 8, 1, 1))
    with pytest.raises(VkharpError, match="not whole runs"):
        matvec(rec, out, dw, x, None, tiling=Tiling(4, 1, 8, 1, 1))
    with pytest.raises(VkharpError, match="scalar variant is for f32/f16"):
        matvec(rec, out, dw, x, None, tiling=Tiling(0))
    _, wide = _weight(device, rng, "f16", 2, 32 * 40)
    with pytest.raises(VkharpError, match="at most 32"):
        matvec(rec, device.buffer(2), wide, device.buffer(32 * 40), None, tiling=Tiling(1, 1, 8, 1, 1))
    assert [s.kind for s in rec.steps] == ["barrier"]   # only the start: the failed calls recorded nothing


def test_mixed_format_layers_dispatch_per_format(device, rng):
    """A Q4_K_M-style role: the same matrix in a different format per layer (Gemma-3-270M's down_proj
    alternates Q6_K and Q4_K, its v_proj Q8_0 and Q5_0). Consecutive layers of one format share a
    part, a change of format starts one, and each layer runs its own format's pipeline."""
    fmts = ["q4_k", "q6_k", "q6_k", "q5_0", "q8_0", "q4_k"]
    rows, cols = 41, 512
    packed = [quant.quantize(rand(rng, rows, cols), f) for f in fmts]
    dw = upload_stacked(device, packed, len(fmts), "mixed")
    assert [(p.format, p.layer0, p.layers) for p in dw.parts] == [
        ("q4_k", 0, 1), ("q6_k", 1, 2), ("q5_0", 3, 1), ("q8_0", 4, 1), ("q4_k", 5, 1)]
    assert dw.nbytes == sum(p.nbytes for p in packed)   # each format at its own size
    bias = rand(rng, len(fmts), rows)
    bb = device.buffer(bias, kind="const")
    x1, xn = rand(rng, cols), rand(rng, 3, cols)
    for layer in range(len(fmts)):
        out1, outn = device.buffer(rows), device.buffer((3, rows))
        rec = device.recorder()
        matvec(rec, out1, dw, device.buffer(x1), bb, layer=layer)
        matmul(rec, outn, dw, device.buffer(xn), bb, layer=layer)
        rec.finish().run()
        _check(out1.read(), ref.matvec(packed[layer], x1, bias[layer]), cols)
        _check(outn.read().reshape(3, rows), ref.matmul(packed[layer], xn, bias[layer]), cols)


# -- output modes: one sweep of a row-stacked matrix, several outputs (engine/model.py stacks them) ---
SPLIT = [("f32", 101, None, False), ("q4_1", 288, None, False), ("q4_1", 288, None, True),
         ("q8_0", 320, Tiling(2, 8, 1, 5, 2, subgroup=True), False),
         ("q8_0", 320, Tiling(2, 8, 1, 5, 2, subgroup=True), True),
         ("q4_0", 288, Tiling(1, 3, 3, 4, 3), True), ("f16", 160, Tiling(1, 5, 8, 2, 3), False),
         ("q5_0", 288, None, True), ("q4_k", 512, None, False), ("q6_k", 768, Tiling(2, 8, 1, 5, 2, subgroup=True), True),
         ("iq4_nl", 288, Tiling(1, 3, 3, 4, 3), True), ("iq4_xs", 512, None, False),
         ("q2_k", 512, Tiling(2, 3, 3, 4, 3), True), ("q3_k", 768, None, False),
         ("q8_0", 320, Tiling(2, 1, 8, 5, 3, stream_rows=2), True)]


@pytest.mark.parametrize("fmt,cols,tiling,folded", SPLIT, ids=[f"{f}-{c}-{t}-{'norm' if n else 'plain'}"
                                                               for f, c, t, n in SPLIT])
def test_split_outputs_of_stacked_rows(device, rng, fmt, cols, tiling, folded):
    """out=(q, k, v): rows [0, 23) of [Wq; Wk; Wv] go to q, [23, 30) to k, [30, 41) to v, with a stacked
    bias, on weight parts whose boundaries fall inside the outputs (part rows 9): the twin is the
    stacked product's columns split. Same arithmetic per row as one output: the same bound."""
    from engine.ops.matmul import Norm
    from engine.reference.norm import rmsnorm as ref_rmsnorm
    sizes = (23, 7, 11)
    rows = sum(sizes)
    packed = quant.quantize(rand(rng, rows, cols), fmt)
    q_row, s_row = packed.qs.shape[1] * 4, 0 if packed.scales is None else packed.scales[0].nbytes
    dw = upload_weight(device, packed, "w_qkv", max_bytes=9 * max(q_row, s_row) + 4)
    assert len(dw.parts) > 1
    bias = rand(rng, rows)
    nw = (1.0 + 0.5 * rand(rng, 1, cols)).astype(np.float32)
    for op, n in ((matvec, 1), (matmul, 5)):
        x = 2.0 * rand(rng, n, cols)
        outs = [device.buffer((n, s)) for s in sizes]
        rec = device.recorder()
        op(rec, tuple(outs), dw, device.buffer(x[0] if n == 1 else x), device.buffer(bias, kind="const"),
           tiling=tiling, norm=Norm(device.buffer(nw, kind="const"), 1e-5) if folded else None)
        rec.finish().run()
        xin = ref_rmsnorm(x, nw[0], eps=1e-5) if folded else x
        for got, want in zip(outs, ref.matmul_split(packed, xin, sizes, bias)):
            _check(got.read().reshape(want.shape), want, cols)


@pytest.mark.parametrize("fmt,cols,tiling", [("q4_1", 288, None), ("f32", 101, None),
                                              ("q8_0", 320, Tiling(2, 8, 1, 5, 2, subgroup=True))])
def test_two_way_split(device, rng, fmt, cols, tiling):
    """out=(gate, up) of [Wg; Wu] (an adapter adds to each before the GLU): rows [0, 19) to the first
    output, [19, 40) to the second, across part boundaries; the same bound as one output."""
    sizes = (19, 21)
    packed = quant.quantize(rand(rng, sum(sizes), cols), fmt)
    q_row, s_row = packed.qs.shape[1] * 4, 0 if packed.scales is None else packed.scales[0].nbytes
    dw = upload_weight(device, packed, "w_gu", max_bytes=9 * max(q_row, s_row) + 4)
    for op, n in ((matvec, 1), (matmul, 5)):
        x = 2.0 * rand(rng, n, cols)
        outs = [device.buffer((n, s)) for s in sizes]
        rec = device.recorder()
        op(rec, tuple(outs), dw, device.buffer(x[0] if n == 1 else x), tiling=tiling)
        rec.finish().run()
        want = ref.matmul(packed, x)
        _check(outs[0].read().reshape(n, sizes[0]), want[:, :sizes[0]], cols)
        _check(outs[1].read().reshape(n, sizes[1]), want[:, sizes[0]:], cols)


GLU = [("f32", 101, None), ("f16", 160, None), ("q4_1", 288, None), ("q4_0", 96, None), ("q8_0", 320, None),
       ("q4_1", 576, Tiling(2, 3, 3, 5, 3)),                     # CL > 1, odd RPL (made even), TN 3
       ("q8_0", 320, Tiling(2, 8, 1, 3, 2, subgroup=True)),      # the GPU tiling: subgroup sums
       ("q4_0", 288, Tiling(1, 1, 8, 3, 4)),                     # CL = 1: the pair meets in one lane
       ("q4_1", 576, Tiling(2, 1, 8, 5, 3, stream_rows=3)),      # streaming: XB 3 → 4, RPL 5 → 6
       ("f16", 96, Tiling(1, 3, 2, 4, 2, 3)),                    # RC 3 → 2 rows per reduction round
       ("q5_0", 640, None), ("q5_1", 320, Tiling(2, 3, 3, 5, 3)), ("q4_k", 512, None),   # Gemma's gate/up: Q5_0
       ("q5_k", 256, Tiling(1, 8, 1, 3, 2, subgroup=True)), ("q6_k", 512, None), ("iq4_nl", 320, None),
       ("iq4_xs", 512, Tiling(4, 1, 8, 3, 2)), ("q2_k", 512, None),
       ("q3_k", 256, Tiling(1, 8, 1, 3, 2, subgroup=True))]


@pytest.mark.parametrize("fmt,cols,tiling", GLU, ids=[f"{f}-{c}-{t}" for f, c, t in GLU])
def test_glu_epilogue(device, rng, fmt, cols, tiling):
    """glu=act: [Wg; Wu] (2F rows, F = 27) in one dispatch writing act(x·Wgᵀ)·(x·Wuᵀ): the twin is the
    activation twin over the two products (float64). The activation adds a few float32 roundings per
    output, far inside the same bound; silu and gelu_tanh, matvec and a chunk of 5, folded norm."""
    from engine.ops.matmul import Norm
    from engine.reference.norm import rmsnorm as ref_rmsnorm
    f = 27
    packed = quant.quantize(rand(rng, 2 * f, cols), fmt)
    dw = upload_weight(device, packed, "w_gate_up")
    nw = (1.0 + 0.5 * rand(rng, 1, cols)).astype(np.float32)
    for act in ("silu", "gelu_tanh"):
        for op, n in ((matvec, 1), (matmul, 5)):
            folded = cols % 32 == 0 and n == 1
            x = 2.0 * rand(rng, n, cols)
            out = device.buffer((n, f))
            rec = device.recorder()
            op(rec, out, dw, device.buffer(x[0] if n == 1 else x), tiling=tiling, glu=act,
               norm=Norm(device.buffer(nw, kind="const"), 1e-5) if folded else None)
            rec.finish().run()
            xin = ref_rmsnorm(x, nw[0], eps=1e-5) if folded else x
            _check(out.read().reshape(n, f), ref.matmul_glu(packed, xin, act), cols)


def test_output_modes_refuse_what_they_cannot_do(device, rng):
    packed = quant.quantize(rand(rng, 54, 96), "q4_1")
    dw = upload_weight(device, packed, "w_gu")
    x, rec = device.buffer(96), device.recorder()
    with pytest.raises(VkharpError, match="half the rows"):
        matvec(rec, device.buffer(54), dw, x, glu="silu")
    with pytest.raises(VkharpError, match="glu must be one of"):
        matvec(rec, device.buffer(27), dw, x, glu="relu")
    with pytest.raises(VkharpError, match="no bias form"):
        matvec(rec, device.buffer(27), dw, x, device.buffer(54, kind="const"), glu="silu")
    with pytest.raises(VkharpError, match="split"):
        matvec(rec, (device.buffer(20), device.buffer(20), device.buffer(20)), dw, x)
    with pytest.raises(VkharpError, match="one output and no GLU"):
        matvec(rec, device.buffer(27), dw, x, glu="silu", residual=True)
    split = upload_weight(device, packed, "w_gu_parts", max_bytes=10 * packed.qs.shape[1] * 4)
    with pytest.raises(VkharpError, match="in one buffer"):
        matvec(rec, device.buffer(27), split, x, glu="silu")
