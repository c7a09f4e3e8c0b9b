"""shaders/local1d.comp against engine/reference/local1d.py, and the twin against a literal numpy
transcription of the seed's TensorFlow layer (idea 10); the backward (shaders/local1d_back.comp)
against its twins, and the twins against torch autograd of the forward."""
import numpy as np
import pytest

from engine.errors import VkharpError
from engine.ops.local1d import local1d, local1d_back_w, local1d_back_x, local1d_swiglu
from engine.reference.local1d import local1d as ref_local1d, local1d_swiglu as ref_local1d_swiglu, window_starts
from engine.reference.local1d import local1d_back_w as ref_back_w, local1d_back_x as ref_back_x
from util import max_rel_err, rand

# float32 sums of `kernel` products against float64: error <= kernel * eps * sum|w x|; for kernel
# <= 64 that is < 4e-6 of sum|w x|, itself a few times the largest |output|: 2e-5.
TOL = 2e-5


def tf_local1d(x, filters, kernel, units=0):
    """The seed's Keras layer, line by line (tf.range float32 * Python-float stride, cast to int32)."""
    in_width = x.shape[-1]
    if units < 1:
        units = in_width
    stride = (in_width - kernel + 1) / units
    indices = (np.arange(0, units, dtype=np.float32) * np.float32(stride)).astype(np.int32)  # tf.cast truncates
    indices = np.arange(kernel) + np.expand_dims(indices, -1)
    slices = np.take(x, indices, axis=-1)
    return np.sum(filters * slices, axis=-1)


def tf_starts(in_width, kernel, units):
    return (np.arange(units, dtype=np.float32) * np.float32((in_width - kernel + 1) / units)).astype(np.int64)


@pytest.mark.parametrize("in_width,kernel,units", [(7, 3, 0), (100, 5, 157), (64, 64, 1), (1001, 16, 333),
                                                   (50, 1, 50), (10, 3, 4000)])
def test_twin_matches_the_seeds_tf_code(rng, in_width, kernel, units):
    n_units = units or in_width
    np.testing.assert_array_equal(window_starts(in_width, kernel, units or None), tf_starts(in_width, kernel, n_units))
    x, w = rand(rng, 3, in_width), rand(rng, n_units, kernel)
    want = tf_local1d(x.astype(np.float64), w.astype(np.float64), kernel, units)
    assert max_rel_err(ref_local1d(x, w, kernel=kernel, units=units or None), want) < 1e-6


@pytest.mark.parametrize("in_width,kernel,units,unit,exact,tf", [(14, 1, 46, 23, 7, 6), (94, 31, 94, 47, 32, 31)])
def test_where_tf_float32_starts_differ(in_width, kernel, units, unit, exact, tf):
    """Documented: float32 i * stride falls just below the integer i * (in - kernel + 1) / units."""
    assert window_starts(in_width, kernel, units)[unit] == exact == unit * (in_width - kernel + 1) // units
    assert tf_starts(in_width, kernel, units)[unit] == tf


def _run(device, x, w, kernel, units, wg=64):
    n_units = units or x.shape[-1]
    out = device.buffer(np.full((x.shape[0], n_units), 7.5, np.float32))
    rec = device.recorder()
    local1d(rec, out, device.buffer(x), device.buffer(w), kernel=kernel, units=units, wg=wg)
    rec.finish().run()
    return out.read().reshape(x.shape[0], n_units)


@pytest.mark.parametrize("rows,in_width,kernel,units", [(1, 7, 3, None), (3, 100, 5, 157), (2, 1001, 16, 333),
                                                        (4, 64, 64, 1), (5, 94, 31, None), (1, 33, 2, 4001),
                                                        (19, 100, 5, 157)])   # rows in blocks of 8, 8, 3
@pytest.mark.parametrize("wg", [32, 64, 256])
def test_local1d(device, rng, rows, in_width, kernel, units, wg):
    n_units = units or in_width
    x, w = rand(rng, rows, in_width), rand(rng, n_units, kernel)
    got = _run(device, x, w, kernel, units, wg)
    assert max_rel_err(got, ref_local1d(x, w, kernel=kernel, units=units)) < TOL


@pytest.mark.parametrize("in_width,kernel,units", [(94, 31, 94), (14, 1, 46), (1000, 7, 65537),
                                                   (100000, 5, 150001)])
def test_window_starts_are_exact(device, in_width, kernel, units):
    """x = 0, 1, 2, ... and a one-hot first tap: each output is its start, exactly. The last case
    has (units - 1) * R0 >= 2^32, the shader's umulExtended + long-division path."""
    w = np.zeros((units, kernel), np.float32)
    w[:, 0] = 1.0
    x = np.arange(in_width, dtype=np.float32)[None, :]
    got = _run(device, x, w, kernel, units)[0]
    starts = window_starts(in_width, kernel, units)
    np.testing.assert_array_equal(got, starts.astype(np.float32))
    assert starts[-1] + kernel <= in_width and np.all(np.diff(starts) >= 0)


def test_bad_inputs(device):
    rec = device.recorder()
    x, w = device.buffer((2, 10)), device.buffer((10, 3))
    with pytest.raises(VkharpError, match="wider than the input"):
        local1d(rec, device.buffer((2, 10)), x, device.buffer((10, 11)), kernel=11)
    with pytest.raises(VkharpError, match="units must be >= 1"):
        local1d(rec, device.buffer((2, 10)), x, w, kernel=3, units=-2)
    with pytest.raises(VkharpError, match="kernel must be a positive integer"):
        local1d(rec, device.buffer((2, 10)), x, device.buffer((10, 1)), kernel=0)
    with pytest.raises(VkharpError, match=r"weight \(10, 3\) must be \[12, 3\]"):
        local1d(rec, device.buffer((2, 12)), x, w, kernel=3, units=12)
    with pytest.raises(VkharpError, match=r"out \(2, 9\) must be \[2, 10\]"):
        local1d(rec, device.buffer((2, 9)), x, w, kernel=3)
    with pytest.raises(VkharpError, match="wider than the input"):
        ref_local1d(np.zeros((1, 4)), np.zeros((4, 5)), kernel=5)


@pytest.mark.parametrize("rows,in_width,kernel,units", [(3, 37, 5, 101), (1, 64, 3, None), (13, 37, 5, 101)])
@pytest.mark.parametrize("residual", [False, True])
def test_stacked_layers_and_residual(device, rng, rows, in_width, kernel, units, residual):
    """Layer l of weights stacked [L, units, kernel] (the woff push constant); residual adds into out.
    Two dispatches of one pipeline (layers 2 and 0) into two outputs; 13 rows: invocations of 8 and 5."""
    n_units = units or in_width
    x, w = rand(rng, rows, in_width), rand(rng, 3, n_units, kernel)
    base = [rand(rng, rows, n_units), rand(rng, rows, n_units)]
    outs = [device.buffer(b) for b in base]
    xb, wb = device.buffer(x), device.buffer(w)
    rec = device.recorder()
    with rec.parallel():
        for out, layer in zip(outs, (2, 0)):
            local1d(rec, out, xb, wb, kernel=kernel, units=units, layer=layer, residual=residual, wg=64)
    rec.finish().run()
    for out, b, layer in zip(outs, base, (2, 0)):
        want = ref_local1d(x, w[layer], kernel=kernel, units=units)
        if residual:   # one more float32 rounding of a sum of the same size: within TOL
            want = b.astype(np.float64) + want
        assert max_rel_err(out.read().reshape(rows, n_units), want) < TOL
    with pytest.raises(VkharpError, match="holds 3 layer"):
        local1d(device.recorder(), outs[0], xb, wb, kernel=kernel, units=units, layer=3)
    with pytest.raises(VkharpError, match="must not be x"):
        local1d(device.recorder(), xb, xb, device.buffer((in_width, kernel)), kernel=kernel)


# local1d_swiglu: g and u are each within TOL of their largest |value| (above); d(silu(g) u) is at most
# 1.1 |u| dg + |silu(g)| du, and |silu(g)| <= max|g|, so the error is below 2.1 * TOL * max|g| * max|u|.
GLU_TOL = 2.1 * TOL


@pytest.mark.parametrize("rows,in_width,kernel,units", [(3, 37, 5, 101), (1, 48, 7, 775), (2, 64, 64, 3),
                                                        (21, 48, 7, 775)])   # 8 + 8 + 5 rows per invocation
def test_local1d_swiglu(device, rng, rows, in_width, kernel, units):
    """Gate and up in one pass (layer 1 of weights stacked [2, units, kernel]) against the twin."""
    x, wg_, wu = rand(rng, rows, in_width), rand(rng, 2, units, kernel), rand(rng, 2, units, kernel)
    out = device.buffer(np.full((rows, units), 7.5, np.float32))
    rec = device.recorder()
    local1d_swiglu(rec, out, device.buffer(x), device.buffer(wg_), device.buffer(wu), kernel=kernel, units=units,
                   layer=1, wg=64)
    rec.finish().run()
    g, u = ref_local1d(x, wg_[1], kernel=kernel, units=units), ref_local1d(x, wu[1], kernel=kernel, units=units)
    want = ref_local1d_swiglu(x, wg_[1], wu[1], kernel=kernel, units=units)
    err = np.max(np.abs(out.read().reshape(rows, units).astype(np.float64) - want))
    assert err / (np.abs(g).max() * np.abs(u).max()) < GLU_TOL


# -- backward -------------------------------------------------------------------------------------
# dx sums about kernel * units / (in - kernel + 1) products per element, dw sums N: float32 against
# float64 stays below (terms) * eps * sum|terms|, a few 1e-6 of the largest output here: 2e-5.
BACK_SHAPES = [(1, 7, 3, None), (3, 100, 5, 157), (2, 1001, 16, 333), (4, 64, 64, 1), (5, 94, 31, None),
               (3, 33, 2, 4001), (2, 50, 1, 50)]


def _back(device, fn, out0, dy, other, kernel, units, accumulate=False, wg=64):
    out = device.buffer(out0.copy())
    rec = device.recorder()
    fn(rec, out, device.buffer(dy), device.buffer(other), kernel=kernel, units=units, accumulate=accumulate, wg=wg)
    rec.finish().run()
    return out.read().reshape(out0.shape)


@pytest.mark.parametrize("rows,in_width,kernel,units", BACK_SHAPES)
@pytest.mark.parametrize("accumulate", [False, True])
def test_local1d_back_x(device, rng, rows, in_width, kernel, units, accumulate):
    n_units = units or in_width
    dy, w = rand(rng, rows, n_units), rand(rng, n_units, kernel)
    dx0 = rand(rng, rows, in_width)
    got = _back(device, local1d_back_x, dx0, dy, w, kernel, units, accumulate, wg=32 if accumulate else 64)
    want = ref_back_x(dy, w, kernel=kernel, in_width=in_width, units=units) + (dx0 if accumulate else 0)
    assert max_rel_err(got, want) < TOL


@pytest.mark.parametrize("rows,in_width,kernel,units", BACK_SHAPES)
@pytest.mark.parametrize("accumulate", [False, True])
def test_local1d_back_w(device, rng, rows, in_width, kernel, units, accumulate):
    n_units = units or in_width
    dy, x = rand(rng, rows, n_units), rand(rng, rows, in_width)
    dw0 = rand(rng, n_units, kernel)
    got = _back(device, local1d_back_w, dw0, dy, x, kernel, units, accumulate, wg=32 if accumulate else 64)
    want = ref_back_w(dy, x, kernel=kernel, units=units) + (dw0 if accumulate else 0)
    assert max_rel_err(got, want) < TOL


@pytest.mark.parametrize("in_width,kernel,units", [(1000, 7, 65537), (100000, 5, 150001)])
def test_back_x_covering_ranges_are_exact(device, in_width, kernel, units):
    """dy = 1 and w = 1: dx[j] counts the windows covering j, exactly; the second case takes the
    64-bit path (WIDE) both for the covering range and for the start of its first unit."""
    got = _back(device, local1d_back_x, np.zeros((1, in_width), np.float32), np.ones((1, units), np.float32),
                np.ones((units, kernel), np.float32), kernel, units)[0]
    starts = window_starts(in_width, kernel, units)
    want = np.zeros(in_width)
    np.add.at(want, (starts[:, None] + np.arange(kernel)).reshape(-1), 1.0)
    np.testing.assert_array_equal(got, want.astype(np.float32))


@pytest.mark.parametrize("in_width,kernel,units", [(7, 3, None), (40, 5, 97), (30, 30, 2), (33, 4, 11)])
def test_back_twins_match_torch_autograd(rng, in_width, kernel, units):
    torch = pytest.importorskip("torch")
    n_units = units or in_width
    x, w, dy = rand(rng, 3, in_width), rand(rng, n_units, kernel), rand(rng, 3, n_units)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    wt = torch.tensor(w.astype(np.float64), requires_grad=True)
    idx = torch.as_tensor(window_starts(in_width, kernel, units)[:, None] + np.arange(kernel))
    out = (xt[:, idx] * wt).sum(-1)                  # the seed's gather-multiply-sum, in torch
    assert max_rel_err(out.detach().numpy(), ref_local1d(x, w, kernel=kernel, units=units)) < 1e-6
    out.backward(torch.tensor(dy.astype(np.float64)))
    assert max_rel_err(ref_back_x(dy, w, kernel=kernel, in_width=in_width, units=units), xt.grad.numpy()) < 1e-6
    assert max_rel_err(ref_back_w(dy, x, kernel=kernel, units=units), wt.grad.numpy()) < 1e-6


def test_back_bad_inputs(device):
    rec = device.recorder()
    dy, w = device.buffer((2, 10)), device.buffer((10, 3))
    with pytest.raises(VkharpError, match=r"dy \(2, 9\) must be \[N, 10\]"):
        local1d_back_x(rec, device.buffer((2, 10)), device.buffer((2, 9)), w, kernel=3)
    with pytest.raises(VkharpError, match=r"weight \(10, 3\) must be \[10, 4\]"):
        local1d_back_x(rec, device.buffer((2, 10)), dy, w, kernel=4)
    with pytest.raises(VkharpError, match=r"dx \(3, 10\) must be \[2, 10\]"):
        local1d_back_x(rec, device.buffer((3, 10)), dy, w, kernel=3)
    with pytest.raises(VkharpError, match=r"dw \(10, 4\) must be \[10, 3\]"):
        local1d_back_w(rec, device.buffer((10, 4)), dy, device.buffer((2, 10)), kernel=3)
    with pytest.raises(VkharpError, match="read-only"):
        local1d_back_w(rec, device.buffer(np.zeros((10, 3), np.float32), kind="const"), dy, device.buffer((2, 10)),
                       kernel=3)


@pytest.mark.parametrize("layer", [0, 2])
def test_back_reads_and_writes_one_layer_of_a_stack(device, rng, layer):
    """Weights stacked [L, units, kernel] (as a model holds them): back_x reads layer's matrix,
    back_w adds into layer's slice of the stacked gradient and leaves the other layers untouched."""
    rows, in_width, kernel, units = 3, 45, 6, 101
    w, dy, x = rand(rng, 3, units, kernel), rand(rng, rows, units), rand(rng, rows, in_width)
    dw0 = rand(rng, 3, units, kernel)
    dx, dw = device.buffer((rows, in_width)), device.buffer(dw0.copy())
    rec = device.recorder()
    local1d_back_x(rec, dx, device.buffer(dy), device.buffer(w), kernel=kernel, units=units, layer=layer)
    local1d_back_w(rec, dw, device.buffer(dy), device.buffer(x), kernel=kernel, units=units, layer=layer,
                   accumulate=True)
    rec.finish().run()
    want_x = ref_back_x(dy, w[layer], kernel=kernel, in_width=in_width, units=units)
    assert max_rel_err(dx.read().reshape(rows, in_width), want_x) < TOL
    want_w = dw0.copy()
    want_w[layer] += ref_back_w(dy, x, kernel=kernel, units=units)
    assert max_rel_err(dw.read().reshape(want_w.shape), want_w) < TOL
    with pytest.raises(VkharpError, match="holds 3 layer"):
        local1d_back_x(device.recorder(), dx, device.buffer(dy), device.buffer(w), kernel=kernel, units=units, layer=3)
