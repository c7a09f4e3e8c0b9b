"""shaders/pool_sum.comp against engine/reference/pool.py: odd widths, the valid-row count and the
restart at position 0 are read at replay time, and the sum carries across chunks."""
import numpy as np
import pytest

from engine.errors import VkharpError
from engine.ops.pool import pool_sum
from engine.params import write_step
from engine.reference import pool as ref
from util import rand

# float32 adds in the same row order as the twin: Vulkan rounds f32 addition correctly, so the two
# agree to the last bit; 4 ulp of the sum of magnitudes leaves room for a driver that reassociates.
TOL = 4 * 2.0 ** -23


@pytest.mark.parametrize("rows,dim,wg", [(7, 83, 32), (1, 65, 64), (5, 200, 64)])
def test_pool_sum_accumulates_valid_rows_across_chunks(device, rng, rows, dim, wg):
    chunks = [rand(rng, rows, dim) for _ in range(3)]
    xb, acc = device.buffer(chunks[0]), device.buffer(np.full(dim, 9.0, np.float32))  # stale values must go
    step = device.buffer(8, np.uint32, "param", name="step")
    rec = device.recorder()
    pool_sum(rec, acc, xb, step, wg=wg)
    prog = rec.finish()
    want, pos, bound = np.full(dim, 9.0, np.float32), 0, np.zeros(dim)
    for x, n in zip(chunks, (rows, max(1, rows - 2), rows)):
        xb.write(x)
        write_step(step, pos=pos, n_tokens=n)
        prog.run()
        want = ref.pool_sum(want, x, pos, n)
        bound += np.abs(x[:n]).sum(0)
        pos += n
        got = acc.read()
        assert np.all(np.abs(got - want) <= TOL * bound), np.abs(got - want).max()
    write_step(step, pos=0, n_tokens=1)   # a new pass restarts the sum
    prog.run()
    np.testing.assert_allclose(acc.read(), chunks[-1][0], rtol=0, atol=0)


def test_pool_sum_checks_shapes(device):
    with pytest.raises(VkharpError, match="pool_sum"):
        rec = device.recorder()
        pool_sum(rec, device.buffer(10), device.buffer(np.zeros((3, 11), np.float32)), device.buffer(8, np.uint32))
