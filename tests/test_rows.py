"""shaders/select_row.comp against engine/reference/rows.py: the row is chosen at replay time."""
import numpy as np

from engine.ops.rows import select_row
from engine.params import write_step
from engine.reference import rows as ref
from util import rand


def test_select_row_follows_step_params(device, rng):
    x = rand(rng, 7, 83)
    xb, out = device.buffer(x), device.buffer(83)
    step = device.buffer(8, np.uint32, name="step")
    rec = device.recorder()
    rec.upload(step)
    select_row(rec, out, xb, step, wg=32)
    prog = rec.finish()
    for n in (1, 5, 7):
        write_step(step, pos=0, n_tokens=n)
        prog.run()
        np.testing.assert_array_equal(out.read(), ref.select_row(x, n))
