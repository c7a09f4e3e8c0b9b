"""shaders/elementwise.comp (add, scale, mix, split_mix) against engine/reference/elementwise.py."""
import numpy as np
import pytest

from engine.errors import VkharpError
from engine.ops import elementwise as ops
from engine.reference import elementwise as ref
from util import max_rel_err, rand

SHAPES = [(1,), (3, 333), (7, 10007)]
# mix is two products and a sum, possibly fused: a few float32 roundings, ~2e-7 relative to the
# size of its terms (|beta·a| + |(1 − beta)·b|: the result itself may cancel to ~0); 1e-6 leaves margin.
MIX_TOL = 1e-6


def mix_err(got, want, a, b, beta) -> float:
    """Worst error of a mix relative to its largest terms (|beta·a| + |(1 − beta)·b|)."""
    terms = np.abs(beta * np.asarray(a, np.float64)) + np.abs((1 - beta) * np.asarray(b, np.float64))
    return float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))) / terms.max())


def _run(device, fn):
    rec = device.recorder()
    fn(rec)
    rec.finish().run()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("wg", [32, 64, 256])
@pytest.mark.parametrize("where", ["new", "a", "b", "a_is_b"])
def test_add(device, rng, shape, wg, where):
    a, b = rand(rng, *shape), rand(rng, *shape)
    ab, bb = device.buffer(a), device.buffer(b)
    if where == "a_is_b":
        b, bb = a, ab
    out = {"new": device.buffer(shape), "a": ab, "b": bb, "a_is_b": ab}[where]
    _run(device, lambda rec: ops.add(rec, out, ab, bb, wg=wg))
    # One correctly rounded float32 addition (Vulkan requires it for OpFAdd), and the float64 twin
    # rounded once to float32 is the same number: exact.
    np.testing.assert_array_equal(out.read().reshape(shape), ref.add(a, b))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("wg", [64, 256])
@pytest.mark.parametrize("inplace", [False, True])
def test_scale(device, rng, shape, wg, inplace):
    x = rand(rng, *shape)
    xb = device.buffer(x)
    out = xb if inplace else device.buffer(shape)
    s = float(np.float32(-2.7))  # a float32 value: then one correctly rounded product, exact
    _run(device, lambda rec: ops.scale(rec, out, xb, s=s, wg=wg))
    np.testing.assert_array_equal(out.read().reshape(shape), ref.scale(x, s=s))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("where", ["new", "a", "b"])
@pytest.mark.parametrize("beta", [0.5, 0.3, 1.25])
def test_mix(device, rng, shape, where, beta):
    a, b = rand(rng, *shape, scale=5.0), rand(rng, *shape)
    ab, bb = device.buffer(a), device.buffer(b)
    out = {"new": device.buffer(shape), "a": ab, "b": bb}[where]
    _run(device, lambda rec: ops.mix(rec, out, ab, bb, beta=beta, wg=64))
    assert mix_err(out.read().reshape(shape), ref.mix(a, b, beta=beta), a, b, beta) < MIX_TOL


@pytest.mark.parametrize("n", [1, 333, 10007])
@pytest.mark.parametrize("beta", [0.5, 0.3])
def test_split_mix(device, rng, n, beta):
    x = rand(rng, 2, n, scale=5.0)
    first, mixed = device.buffer((1, n)), device.buffer((1, n))
    _run(device, lambda rec: ops.split_mix(rec, first, mixed, device.buffer(x), beta=beta, wg=64))
    want_first, want_mixed = ref.split_mix(x, beta=beta)
    np.testing.assert_array_equal(first.read(), want_first)          # a copy: exact
    assert mix_err(mixed.read().reshape(-1), want_mixed, x[0], x[1], beta) < MIX_TOL


def test_chain_residual_then_mix(device, rng):
    """In-place ops that depend on each other in one program (the recorder must order them)."""
    a, b, c = rand(rng, 999), rand(rng, 999), rand(rng, 999)
    ab, bb, cb = device.buffer(a), device.buffer(b), device.buffer(c)
    def prog(rec):
        ops.add(rec, ab, ab, bb)        # a += b
        ops.add(rec, ab, ab, bb)        # a += b
        ops.scale(rec, cb, cb, s=0.5)   # c *= 0.5
        ops.mix(rec, cb, ab, cb, beta=0.25)
    _run(device, prog)
    a2 = ref.add(ref.add(a, b), b)
    want = ref.mix(a2, ref.scale(c, s=0.5), beta=0.25)
    np.testing.assert_array_equal(ab.read(), a2)
    assert max_rel_err(cb.read(), want) < MIX_TOL


def test_bad_inputs(device):
    rec = device.recorder()
    with pytest.raises(VkharpError, match="sizes do not agree"):
        ops.add(rec, device.buffer(8), device.buffer(8), device.buffer(9))
    with pytest.raises(VkharpError, match="must be f32"):
        ops.scale(rec, device.buffer(8), device.buffer(8, np.uint32), s=2.0)
    with pytest.raises(VkharpError, match="beta must be finite"):
        ops.mix(rec, device.buffer(4), device.buffer(4), device.buffer(4), beta=float("nan"))


def test_copy_bw_copies_exactly(device, rng):
    from engine.ops.elementwise import copy_bw
    from engine.reference.elementwise import copy_bw as ref_copy
    x = rng.standard_normal(4 * 1037).astype(np.float32)
    for run in (1, 7, 256):
        out = device.buffer(x.size)
        rec = device.recorder()
        copy_bw(rec, out, device.buffer(x), run=run, wg=32)
        rec.finish().run()
        np.testing.assert_array_equal(out.read(), ref_copy(x))


# softcap: x / cap and cap * t are one rounding each (6e-8 relative) and Cephes tanhf errs by ~1.3e-7
# relative; tanh' <= 1, so the result is within ~3e-7 of its own size; 1e-6 leaves margin. A wrong
# formula (no cap, tanh(x) * cap) is off by O(1).
SOFTCAP_TOL = 1e-6


@pytest.mark.parametrize("n", [1, 333, 10007])
@pytest.mark.parametrize("cap", [30.0, 2.5])
@pytest.mark.parametrize("inplace", [False, True])
def test_softcap(device, rng, n, cap, inplace):
    # spread over the small-|x| polynomial, the exp branch and saturation (|x| / cap up to ~20)
    x = rand(rng, n, scale=cap) * np.exp(rng.uniform(-6, 3, n)).astype(np.float32)
    xb = device.buffer(x)
    out = xb if inplace else device.buffer(np.zeros_like(x))
    _run(device, lambda rec: ops.softcap(rec, out, xb, cap=cap))
    got, want = out.read().reshape(-1), ref.softcap(x, cap=cap)
    err = np.abs(got.astype(np.float64) - want) / np.maximum(np.abs(want), 1e-30)
    assert err.max() < SOFTCAP_TOL, err.max()
    assert np.all(np.abs(got) <= cap)


def test_softcap_refuses_bad_cap(device):
    x = device.buffer(np.ones(4, np.float32))
    with pytest.raises(VkharpError, match="positive finite"):
        ops.softcap(device.recorder(), x, x, cap=0.0)


@pytest.mark.parametrize("n", [1, 333, 10007])
@pytest.mark.parametrize("inplace", [False, True])
def test_neg_abs(device, rng, n, inplace):
    x = rand(rng, n, scale=3.0)
    xb = device.buffer(x)
    out = xb if inplace else device.buffer(np.zeros_like(x))
    _run(device, lambda rec: ops.neg_abs(rec, out, xb, wg=64))
    np.testing.assert_array_equal(out.read().reshape(-1), ref.neg_abs(x))   # a sign change: exact
