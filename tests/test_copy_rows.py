"""shaders/copy_rows.comp against engine/reference/copy_rows.py (exact: moves and one add per element)."""
import numpy as np
import pytest

from engine.errors import VkharpError
from engine.ops.copy_rows import copy_block, gather_rows, scatter_rows
from engine.reference import copy_rows as ref
from util import rand


@pytest.mark.parametrize("accumulate", [False, True])
def test_copy_block_offsets(device, rng, accumulate):
    x, o = rand(rng, 3, 77), rand(rng, 4, 61)
    xb, ob = device.buffer(x), device.buffer(o)
    rec = device.recorder()
    copy_block(rec, ob, xb, 101, src=29, dst=57, accumulate=accumulate)
    rec.finish().run()
    np.testing.assert_array_equal(ob.read().reshape(o.shape),
                                  ref.copy_block(o, x, 101, src=29, dst=57, accumulate=accumulate))


def test_gather_then_scatter(device, rng):
    """Rows 5..9 of a 13-row sequence (answer rows), one padded index (past the end: a zero row);
    the scatter adds them back where they came from and leaves every other row as it was."""
    x, g = rand(rng, 13, 37), rand(rng, 6, 37)
    idx = np.array([5, 6, 7, 8, 9, 13], np.uint32)
    xb, ib = device.buffer(x), device.buffer(idx)
    out, acc = device.buffer((6, 37)), device.buffer(x.copy())
    rec = device.recorder()
    gather_rows(rec, out, xb, ib)
    scatter_rows(rec, acc, device.buffer(g), ib)
    rec.finish().run()
    np.testing.assert_array_equal(out.read().reshape(6, 37), ref.gather_rows(x, idx))
    assert not out.read().reshape(6, 37)[5].any()
    np.testing.assert_array_equal(acc.read().reshape(13, 37), ref.scatter_rows(x, g, idx))


def test_bad_shapes_are_clear(device):
    rec = device.recorder()
    with pytest.raises(VkharpError, match="do not fit"):
        copy_block(rec, device.buffer(10), device.buffer(10), 8, src=4)
    with pytest.raises(VkharpError, match="must be u32"):
        gather_rows(rec, device.buffer((2, 4)), device.buffer((3, 4)), device.buffer(2))
