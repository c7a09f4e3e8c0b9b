"""shaders/norm.comp against engine/reference/norm.py."""
import pytest

from engine import ops, reference
from util import max_rel_err, rand

# f32 sums of up to a few thousand terms in a different order: ~1e-6 relative; 1e-5 leaves margin.
TOL = 1e-5


@pytest.mark.parametrize("rows,dim", [(1, 7), (3, 576), (5, 1001)])
@pytest.mark.parametrize("wg", [32, 64, 256])
def test_rmsnorm(device, rng, rows, dim, wg):
    x, w = rand(rng, rows, dim), rand(rng, dim)
    xb, wb = device.buffer(x), device.buffer(w, kind="const")
    out = device.buffer((rows, dim))
    rec = device.recorder()
    ops.rmsnorm(rec, out, xb, wb, eps=1e-5, wg=wg)
    rec.finish().run()
    assert max_rel_err(out.read().reshape(rows, dim), reference.rmsnorm(x, w, eps=1e-5)) < TOL


@pytest.mark.parametrize("rows,dim", [(1, 9), (4, 640)])
@pytest.mark.parametrize("wg", [32, 128])
def test_layernorm(device, rng, rows, dim, wg):
    x, w, b = rand(rng, rows, dim, scale=3.0) + 2.0, rand(rng, dim), rand(rng, dim)
    out = device.buffer((rows, dim))
    rec = device.recorder()
    ops.layernorm(rec, out, device.buffer(x), device.buffer(w), device.buffer(b), eps=1e-6, wg=wg)
    rec.finish().run()
    assert max_rel_err(out.read().reshape(rows, dim), reference.layernorm(x, w, b, eps=1e-6)) < TOL


def test_shape_mismatch_is_a_clear_error(device):
    from engine.errors import VkharpError
    rec = device.recorder()
    with pytest.raises(VkharpError, match="do not agree"):
        ops.rmsnorm(rec, device.buffer((2, 8)), device.buffer((2, 8)), device.buffer(7), eps=1e-5)
