"""The training kernels of issue 14 part 1 against their twins: shaders/matmul_t.comp (dx = dy·W through
a frozen weight of any format), shaders/grad_weight.comp (dw = dyᵀ·x), shaders/adamw.comp (AdamW with
the gradient threshold, also against torch.optim.AdamW) and shaders/sum_squares.comp (norm partials).

Tolerances. matmul_t and grad_weight: the twins compute in float64 on the same float32 inputs (for
matmul_t the same decoded weights: engine.quant.dequantize decodes the bits as `weight_at` does), so
the only error is the shaders' float32 sums of K products (K = rows summed, or tokens), each addition
rounding by at most 2^-24 relative. For random-sign terms the rounding errors add like a random walk,
‖err‖/‖ref‖ ≈ 2^-24·sqrt(K) ≈ 6e-8·sqrt(K); TOL_PER_SQRT_K = 1e-6 per sqrt(K) leaves a 16x margin and
stays far below a real bug (one missing row or token changes the result by > 1e-2).
adamw: a few float32 roundings per element in both the shader and its float32 twin, in the same order
(the GPU's sqrt and division are correctly rounded or within 1-3 ulp): 1e-6 relative to the parameters.
"""
import math

import numpy as np
import pytest

from engine import quant
from engine.errors import VkharpError
from engine.ops import adamw, grad_weight, matmul_t, pack_hyper, sum_squares, sum_squares_groups, zero_counts
from engine.reference import adamw as ref_adamw
from engine.reference import grad_weight as ref_grad_weight
from engine.reference import matmul_t as ref_matmul_t
from engine.reference import sum_squares as ref_sum_squares
from engine.weights import upload_stacked, upload_weight
from util import rand, rel_err

TOL_PER_SQRT_K = 1e-6


def _check(got, want, k):
    tol = TOL_PER_SQRT_K * math.sqrt(k)
    err = rel_err(got, want)
    assert err < tol, f"relative error {err:.2e} >= {tol:.2e}"
    # and no single output may be far off (one wrong column or token among many right ones)
    worst = np.max(np.abs(got - want) / (np.abs(want) + np.linalg.norm(want) / math.sqrt(want.size)))
    assert worst < 20 * tol, f"worst element error {worst:.2e}"


def _part_bytes(packed, rows):
    """A max_bytes that puts `rows` rows of `packed` in each part."""
    q_row, s_row = packed.qs.shape[1] * 4, 0 if packed.scales is None else packed.scales[0].nbytes
    return rows * max(q_row, s_row) + 4


def _run_t(device, dw, dy, ntok, *, dx0=None, **kw):
    dx = device.buffer(dx0 if dx0 is not None else (ntok, dw.cols))
    rec = device.recorder()
    matmul_t(rec, dx, dw, device.buffer(dy), **kw)
    rec.finish().run()
    return dx.read().reshape(ntok, dw.cols)


# -- matmul_t -----------------------------------------------------------------------------------------
# rows odd (not multiples of any lane count), f32/f16 columns odd (the last 32-column tile partly
# outside the row), q formats whole blocks (k-quants: 256-column super-blocks), N odd (token tiles
# that do not divide it), and N = 1.
T_SHAPES = {"f32": (37, 101), "f16": (45, 101), "q8_0": (37, 96), "q4_0": (45, 160), "q4_1": (41, 96),
            "q5_0": (37, 96), "q5_1": (45, 160), "q4_k": (37, 256), "q5_k": (45, 256), "q6_k": (41, 512),
            "iq4_nl": (45, 160), "iq4_xs": (37, 512), "q2_k": (41, 512), "q3_k": (45, 256)}


@pytest.mark.parametrize("fmt", quant.FORMATS)
def test_matmul_t_every_format(device, rng, fmt):
    rows, cols = T_SHAPES[fmt]
    packed = quant.quantize(rand(rng, rows, cols), fmt)
    dw = upload_weight(device, packed, f"w_{fmt}")
    for ntok in (11, 1):
        dy = rand(rng, ntok, rows)
        _check(_run_t(device, dw, dy, ntok), ref_matmul_t(packed, dy), rows)


@pytest.mark.parametrize("fmt,cols", [("q4_1", 96), ("f16", 160), ("q6_k", 512)])
def test_matmul_t_row_range_and_accumulate(device, rng, fmt, cols):
    """rows=(row0, count) of a row-stacked matrix ([Wq; Wk; Wv]: the k rows), accumulate=True adds to dx;
    f16 rows of whole blocks (16-byte loads; T_SHAPES has the scalar path's odd width)."""
    rows = 53
    packed = quant.quantize(rand(rng, rows, cols), fmt)
    dw = upload_weight(device, packed, "w_qkv")
    ntok, r0, count = 7, 23, 19
    dy, dx0 = rand(rng, ntok, count), rand(rng, ntok, cols)
    want = ref_matmul_t(packed, dy, rows=(r0, count))
    _check(_run_t(device, dw, dy, ntok, rows=(r0, count)), want, count)
    _check(_run_t(device, dw, dy, ntok, rows=(r0, count), dx0=dx0, accumulate=True), dx0 + want, count)


@pytest.mark.parametrize("fmt,cols", [("q8_0", 96), ("f32", 96), ("f16", 101), ("q5_0", 96), ("q4_k", 256),
                                      ("q3_k", 256), ("q2_k", 512)])
def test_matmul_t_on_weight_parts(device, rng, fmt, cols):
    """A weight split into parts of 9 rows (the last one short): every part adds to dx in turn; row
    ranges that span several parts, start and end inside parts, or lie inside one part."""
    rows = 41
    packed = quant.quantize(rand(rng, rows, cols), fmt)
    dw = upload_weight(device, packed, "w_parts", max_bytes=_part_bytes(packed, 9))
    assert [p.rows for p in dw.parts] == [9, 9, 9, 9, 5]
    ntok = 5
    for rng_rows in (None, (4, 30), (10, 6)):
        count = rows if rng_rows is None else rng_rows[1]
        dy, dx0 = rand(rng, ntok, count), rand(rng, ntok, cols)
        want = ref_matmul_t(packed, dy, rows=rng_rows)
        _check(_run_t(device, dw, dy, ntok, rows=rng_rows), want, count)
        _check(_run_t(device, dw, dy, ntok, rows=rng_rows, dx0=dx0, accumulate=True), dx0 + want, count)


@pytest.mark.parametrize("split", [False, True])
def test_matmul_t_layer_stacked(device, rng, split):
    """Layer l of a layer-stacked weight (whole layers per buffer, or each layer split in two parts),
    through the same dx and dy buffers; a mixed-format stack dispatches each layer's own format."""
    layers, rows, cols = 3, 29, 160
    fmts = ["q4_1", "q8_0", "q8_0"] if not split else ["q8_0"] * 3
    packed = [quant.quantize(rand(rng, rows, cols), f) for f in fmts]
    row_bytes = packed[0].qs.shape[1] * 4
    dw = upload_stacked(device, packed, layers, "stacked", max_bytes=(15 * row_bytes + 8) if split else None)
    assert [(p.format, p.layer0, p.layers) for p in dw.parts] == (
        [("q8_0", l, 1) for l in range(3) for _ in range(2)] if split else [("q4_1", 0, 1), ("q8_0", 1, 2)])
    ntok = 6
    dy, dx = device.buffer(rand(rng, ntok, rows)), device.buffer((ntok, cols))
    for layer in (2, 1, 0):
        before = device.n_pipelines
        rec = device.recorder()
        matmul_t(rec, dx, dw, dy, layer=layer)
        rec.finish().run()
        if layer == 1 and not split:   # layers 1 and 2 share a part: one pipeline, the layer in `wrow`
            assert device.n_pipelines == before
        _check(dx.read().reshape(ntok, cols), ref_matmul_t(packed[layer], dy.read().reshape(ntok, rows)), rows)


@pytest.mark.parametrize("col_lanes,tokens", [(32, 4), (2, 8), (1, 1), (5, 3)])
def test_matmul_t_work_splits(device, rng, col_lanes, tokens):
    """Other work splits than this device's default (the GPU's 32 lanes x 4 tokens, mostly idle on
    7 blocks; groups of 2 and 5 blocks that do not divide them; token tiles that do not divide 13
    tokens), on two parts."""
    rows, cols = 45, 224
    packed = quant.quantize(rand(rng, rows, cols), "q4_0")
    dw = upload_weight(device, packed, "w_split", max_bytes=_part_bytes(packed, 23))
    dy = rand(rng, 13, rows)
    _check(_run_t(device, dw, dy, 13, col_lanes=col_lanes, tokens=tokens), ref_matmul_t(packed, dy), rows)


def test_matmul_t_bad_inputs(device, rng):
    packed = quant.quantize(rand(rng, 10, 64), "q4_1")
    dw = upload_weight(device, packed, "w")
    rec = device.recorder()
    with pytest.raises(VkharpError, match="not a range"):
        matmul_t(rec, device.buffer((2, 64)), dw, device.buffer((2, 5)), rows=(6, 5))
    with pytest.raises(VkharpError, match="dy has 21 values, expected 2 x 10"):
        matmul_t(rec, device.buffer((2, 64)), dw, device.buffer(21))
    with pytest.raises(VkharpError, match="not a multiple"):
        matmul_t(rec, device.buffer(65), dw, device.buffer(10))
    with pytest.raises(VkharpError, match="must be f32"):
        matmul_t(rec, device.buffer(64, np.uint32), dw, device.buffer(10))
    with pytest.raises(VkharpError, match="tokens per group must be 1..8"):
        matmul_t(rec, device.buffer(64), dw, device.buffer(10), tokens=9)
    assert [s.kind for s in rec.steps] == ["barrier"]   # nothing recorded by the failed calls


# -- grad_weight --------------------------------------------------------------------------------------
# LoRA's A (rank rows x wide input) and B (wide rows x rank), a small dense weight, all odd sizes; the
# default split and ones with other lanes / tiles (column lanes that do not divide the group: 12 lanes,
# 3 columns); accumulate and scale.
GW = [(8, 101, 13, {}), (99, 16, 21, {}), (37, 70, 5, dict(wg=8, rows_per_lane=3, cols_per_lane=5)),
      (16, 576, 1, dict(wg=32, rows_per_lane=8, cols_per_lane=8)), (45, 3, 7, dict(wg=12, rows_per_lane=2))]


@pytest.mark.parametrize("r,c,n,kw", GW, ids=[f"{r}x{c}-n{n}-{kw}" for r, c, n, kw in GW])
def test_grad_weight(device, rng, r, c, n, kw):
    dy, x, dw0 = rand(rng, n, r), rand(rng, n, c), rand(rng, r, c)
    want = ref_grad_weight(dy, x)
    for accumulate, scale in ((False, 1.0), (True, 0.25)):
        dw = device.buffer(dw0)
        rec = device.recorder()
        grad_weight(rec, dw, device.buffer(dy), device.buffer(x), accumulate=accumulate, scale=scale, **kw)
        rec.finish().run()
        _check(dw.read().reshape(r, c), (dw0 if accumulate else 0) + scale * want, n)


def test_grad_weight_layer_slices(device, rng):
    """LoRA's stacked A ([L*r, in], engine/tune/lora.py): layer l's slice written from layer l's
    slices of stacked activations (element offsets), one pipeline for every layer; accumulate into
    a slice leaves the other layers' rows alone."""
    layers, r, c, n = 3, 8, 96, 7
    dy, x = rand(rng, layers, n, r), rand(rng, layers, n, c)
    dw0 = rand(rng, layers * r, c)
    dw, dyb, xb = device.buffer(dw0), device.buffer(dy), device.buffer(x)
    for layer in (2, 0):
        before = device.n_pipelines
        rec = device.recorder()
        grad_weight(rec, dw, dyb, xb, layer=layer, rows=r, tokens=n, dy_offset=layer * n * r,
                    x_offset=layer * n * c, accumulate=True, scale=0.5)
        rec.finish().run()
        if layer == 0:
            assert device.n_pipelines == before
    got, want = dw.read().reshape(layers, r, c), dw0.reshape(layers, r, c).astype(np.float64)
    for layer in (2, 0):
        want[layer] += 0.5 * ref_grad_weight(dy[layer], x[layer])
    _check(got, want, n)
    assert np.array_equal(got[1], dw0.reshape(layers, r, c)[1])
    with pytest.raises(VkharpError, match="not layer 3"):
        grad_weight(device.recorder(), dw, dyb, xb, layer=3, rows=r, tokens=n)
    with pytest.raises(VkharpError, match="no 56 values at offset 120"):
        grad_weight(device.recorder(), dw, dyb, xb, rows=r, tokens=n, dy_offset=120)


def test_matmul_t_activation_slices(device, rng):
    """dx and dy as layer l's slices of stacked activations ([L, N, cols], [L, N, rows]), with a row
    range and accumulate; one pipeline for every layer."""
    layers, rows, cols, n, r0, count = 3, 41, 96, 5, 7, 20
    packed = quant.quantize(rand(rng, rows, cols), "q4_1")
    dw = upload_weight(device, packed, "w_slices")
    dy, dx0 = rand(rng, layers, n, count), rand(rng, layers, n, cols)
    dxb, dyb = device.buffer(dx0), device.buffer(dy)
    for layer in (1, 2):
        before = device.n_pipelines
        rec = device.recorder()
        matmul_t(rec, dxb, dw, dyb, rows=(r0, count), accumulate=True, ntok=n, dx_offset=layer * n * cols,
                 dy_offset=layer * n * count)
        rec.finish().run()
        if layer == 2:
            assert device.n_pipelines == before
    got = dxb.read().reshape(layers, n, cols)
    assert np.array_equal(got[0], dx0[0])
    for layer in (1, 2):
        _check(got[layer], dx0[layer] + ref_matmul_t(packed, dy[layer], rows=(r0, count)), count)
    with pytest.raises(VkharpError, match="pass ntok"):
        matmul_t(device.recorder(), dxb, dw, dyb, dx_offset=8)
    with pytest.raises(VkharpError, match="has no 5 x 96 values at offset 1000"):
        matmul_t(device.recorder(), dxb, dw, dyb, rows=(r0, count), ntok=n, dx_offset=1000)


def test_grad_weight_bad_inputs(device):
    rec = device.recorder()
    with pytest.raises(VkharpError, match="must be"):
        grad_weight(rec, device.buffer((4, 6)), device.buffer((3, 4)), device.buffer((2, 6)))
    with pytest.raises(VkharpError, match="2-D"):
        grad_weight(rec, device.buffer(24), device.buffer((3, 4)), device.buffer((3, 6)))


# -- adamw --------------------------------------------------------------------------------------------
def _adam_buffers(device, rng, n):
    p, m, v = rand(rng, n), np.zeros(n, np.float32), np.zeros(n, np.float32)
    return p, m, v, [device.buffer(a.copy()) for a in (p, m, v)]


def test_adamw_matches_torch_for_several_steps(device, rng):
    """threshold 0: torch.optim.AdamW (weight decay, bias corrections) over 4 steps of one recorded
    program replayed with new gradients and hyperparameters; every element counted as updated."""
    torch = pytest.importorskip("torch")
    n, lr, betas, eps, wd = 1000, 1e-2, (0.9, 0.999), 1e-8, 0.1
    p0, _, _, (pb, mb, vb) = _adam_buffers(device, rng, n)
    gb, hyper, counts = device.buffer(n), device.buffer(pack_hyper(lr, *betas, eps, wd, 0.0, 1), kind="param"), \
        device.buffer(2, np.uint32)
    rec = device.recorder()
    zero_counts(rec, counts)
    adamw(rec, pb, gb, mb, vb, hyper, counts)
    prog = rec.finish()
    tp = torch.nn.Parameter(torch.tensor(p0))
    opt = torch.optim.AdamW([tp], lr=lr, betas=betas, eps=eps, weight_decay=wd)
    for step in range(1, 5):
        g = rand(rng, n)
        gb.write(g)
        hyper.write(pack_hyper(lr, *betas, eps, wd, 0.0, step))
        prog.run()
        tp.grad = torch.tensor(g)
        opt.step()
        want = tp.detach().numpy()
        assert rel_err(pb.read(), want) < 1e-6
        st = opt.state[tp]
        assert rel_err(mb.read(), st["exp_avg"].numpy()) < 1e-6
        assert rel_err(vb.read(), st["exp_avg_sq"].numpy()) < 1e-6
        assert counts.read().tolist() == [n, n]


def test_adamw_threshold_and_counts(device, rng):
    """|grad_scale·g| < threshold leaves param, m and v untouched; the rest match the float32 twin;
    counts add [updated, seen] per slot; grad_scale scales before the threshold test. Two parameters
    with their own slots share one parallel block (no barrier between their steps)."""
    th, gs = 0.6, 0.8
    h = pack_hyper(3e-3, 0.9, 0.95, 1e-6, 0.01, th, 3, grad_scale=gs)
    hb, counts = device.buffer(h, kind="param"), device.buffer(4, np.uint32)
    tensors = []
    for n in (3001, 517):
        p0, m0, v0, g = rand(rng, n), rand(rng, n, scale=0.1), np.abs(rand(rng, n, scale=0.1)), rand(rng, n)
        tensors.append(((p0, m0, v0, g), [device.buffer(a.copy()) for a in (p0, g, m0, v0)]))
    rec = device.recorder()
    zero_counts(rec, counts)
    with rec.parallel():
        for slot, (_, bufs) in zip((1, 0), tensors):
            adamw(rec, *bufs, hb, counts, slot=slot)
    rec.finish().run()
    want_counts = []
    for (p0, m0, v0, g), bufs in tensors:
        got = [bufs[0].read(), bufs[2].read(), bufs[3].read()]
        want_p, want_m, want_v, wc = ref_adamw(p0, g, m0, v0, h)
        frozen = np.abs(np.float32(gs) * g) < np.float32(th)
        assert 0.2 < frozen.mean() < 0.8
        for a, a0, w in zip(got, (p0, m0, v0), (want_p, want_m, want_v)):
            assert np.array_equal(a[frozen], a0[frozen])          # bit for bit unchanged
            assert not np.any(a[~frozen] == a0[~frozen])
            assert rel_err(a, w) < 1e-6
        assert wc.tolist() == [int((~frozen).sum()), g.size]
        want_counts.append(wc.tolist())
    assert counts.read().tolist() == want_counts[1] + want_counts[0]   # slot 0: the second tensor


def test_adamw_bad_inputs(device):
    n = 10
    b = [device.buffer(n) for _ in range(4)]
    hyper, counts = device.buffer(pack_hyper(1e-3, 0.9, 0.999, 1e-8, 0, 0, 1), kind="param"), device.buffer(2, np.uint32)
    rec = device.recorder()
    with pytest.raises(VkharpError, match="'param' buffer"):
        adamw(rec, *b, device.buffer(pack_hyper(1e-3, 0.9, 0.999, 1e-8, 0, 0, 1)), counts)
    with pytest.raises(VkharpError, match="one size"):
        adamw(rec, b[0], device.buffer(11), b[2], b[3], hyper, counts)
    with pytest.raises(VkharpError, match="at least 4 words"):
        adamw(rec, *b, hyper, counts, slot=1)
    with pytest.raises(VkharpError, match="step counts from 1"):
        pack_hyper(1e-3, 0.9, 0.999, 1e-8, 0, 0, 0)
    with pytest.raises(VkharpError, match="betas"):
        pack_hyper(1e-3, 1.0, 0.999, 1e-8, 0, 0, 1)


# -- sum_squares --------------------------------------------------------------------------------------
def test_sum_squares_partials_are_deterministic(device, rng):
    """Sizes of one group, of a partial last chunk, and of many groups; the partials of two gradients
    in one out buffer (offsets, recorded in parallel); two runs give the same bits. float32 sums of
    up to CHUNK squares (all positive: errors add at most linearly, ~2^-24 per addition, with the tree
    and per-lane sums far shorter than that): 1e-6 relative."""
    sizes = [1, 4099, 600001]
    xs = [rand(rng, n) for n in sizes]
    gs = [sum_squares_groups(device, n) for n in sizes]
    assert gs[0] == 1 and gs[2] > 100
    out = device.buffer(sum(gs) + 3)
    rec = device.recorder()
    with rec.parallel():
        off = 0
        for x, g in zip(xs, gs):
            sum_squares(rec, out, device.buffer(x), offset=off)
            off += g
    prog = rec.finish()
    prog.run()
    first = out.read()
    off = 0
    for x, g in zip(xs, gs):
        want = ref_sum_squares(x, groups=g)
        assert rel_err(first[off:off + g], want) < 1e-6
        assert abs(first[off:off + g].astype(np.float64).sum() / np.sum(x.astype(np.float64) ** 2) - 1) < 1e-6
        off += g
    out.write(np.zeros(out.size, np.float32))
    prog.run()
    assert np.array_equal(out.read(), first)
    with pytest.raises(VkharpError, match="partial sums"):
        sum_squares(device.recorder(), device.buffer(gs[2] - 1), device.buffer(xs[2]))


def test_matmul_t_on_the_default_models_tied_head(device, rng):
    """The shape the trainer runs it on: SmolLM2-135M's tied 49152 x 576 head (q8_0), all rows, with
    5 tokens of dy: 49152-term float32 sums per output, inside the same sqrt(K) bound."""
    rows, cols, ntok = 49152, 576, 5
    packed = quant.quantize(rand(rng, rows, cols, scale=0.05), "q8_0")
    dw = upload_weight(device, packed, "head")
    dy = rand(rng, ntok, rows)
    _check(_run_t(device, dw, dy, ntok), ref_matmul_t(packed, dy), rows)


def test_trainable_f32_weight_forward_backward_and_step(device, rng):
    """A model trained from scratch: an f32 act buffer [layers, rows, cols] wrapped without a copy
    (engine.weights.trainable_weight) is read by matmul and matmul_t and updated in place by adamw;
    the next product sees the new weights."""
    from engine.ops.matmul import matmul
    from engine.reference.matmul import matmul as ref_matmul
    from engine.weights import trainable_weight
    layers, rows, cols, ntok = 2, 37, 96, 5
    w0 = rand(rng, layers, rows, cols)
    wb = device.buffer(w0)
    dw = trainable_weight(wb, "w")
    assert (dw.layers, dw.rows, dw.cols) == (layers, rows, cols)
    x, dy, g = rand(rng, ntok, cols), rand(rng, ntok, rows), rand(rng, layers * rows * cols)
    out, dx = device.buffer((ntok, rows)), device.buffer((ntok, cols))
    m, v, counts = device.buffer(g.size), device.buffer(g.size), device.buffer(2, np.uint32)
    h = pack_hyper(1e-2, 0.9, 0.999, 1e-8, 0.0, 0.0, 1)
    rec = device.recorder()
    adamw(rec, wb, device.buffer(g), m, v, device.buffer(h, kind="param"), counts)
    matmul(rec, out, dw, device.buffer(x), layer=1)
    matmul_t(rec, dx, dw, device.buffer(dy), layer=1)
    rec.finish().run()
    w1 = ref_adamw(w0.reshape(-1), g, np.zeros(g.size, np.float32), np.zeros(g.size, np.float32), h)[0]
    w1 = w1.reshape(layers, rows, cols)[1]
    packed = quant.quantize(w1, "f32")
    _check(out.read().reshape(ntok, rows), ref_matmul(packed, x), cols)
    _check(dx.read().reshape(ntok, cols), ref_matmul_t(packed, dy), rows)
    with pytest.raises(VkharpError, match="must be able to write"):
        trainable_weight(device.buffer(w0, kind="const"))


@pytest.mark.parametrize("rows,cols", [(1536, 8), (16, 576)])
def test_matmul_t_through_lora_matrices(device, rng, rows, cols):
    """LoRA's backward through its own f32 matrices: dh = dy·B (B [out, r]: 8 columns, the scalar
    `_odd` path, one lane per group) and dx += dh·A (A [r, in]: 16 rows), via trainable_weight."""
    from engine.weights import trainable_weight
    w = rand(rng, rows, cols)
    dw = trainable_weight(device.buffer(w), "lora")
    dy = rand(rng, 13, rows)
    _check(_run_t(device, dw, dy, 13), ref_matmul_t(quant.quantize(w, "f32"), dy), rows)
