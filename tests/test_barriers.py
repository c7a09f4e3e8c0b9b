"""The barrier hazard: recorded programs must order dependent dispatches by the Vulkan spec.

Stock kp records no compute→compute barrier; engine/device.py's Recorder inserts global memory
barriers (patched kp). lavapipe runs commands in order and cannot show a missing one, so these tests
check two things: the recorder places the barriers the spec requires (structure; the validation
gate checks the same programs with the Khronos layer), and long chains of dependent dispatches
replayed many times give exact results (on a real GPU, a missing dependency shows up here as stale
values).
Run on a GPU with: python -m pytest tests/test_barriers.py (also `vkharp selfcheck`).
"""
import numpy as np
import pytest

from engine import ops, reference
from engine.errors import VkharpError


def _chain(device, n, length, replays, wg=64):
    """Ping-pong `length` dependent steps over three buffers (the third adds write-after-read hazards)."""
    x0 = (np.arange(n, dtype=np.uint32) * 2654435761).astype(np.uint32)
    bufs = [device.buffer(x0, name="a"), device.buffer(n, np.uint32, name="b"), device.buffer(n, np.uint32, name="c")]
    rec = device.recorder()
    for i in range(length):
        src, dst = bufs[i % 3], bufs[(i + 1) % 3]
        ops.chain_step(rec, dst, src, stride=7919 + 2 * i, add=1 + i % 5, wg=wg)
    # close the loop so that a replay continues from where the previous one ended
    last = bufs[length % 3]
    if last is not bufs[0]:
        ops.chain_step(rec, bufs[0], last, stride=1, add=0, wg=wg)
    prog = rec.finish()
    want = x0.copy()
    for _ in range(replays):
        prog.run()
        for i in range(length):
            want = reference.chain_step(want, stride=7919 + 2 * i, add=1 + i % 5)
    return prog, bufs[0].read(), want


@pytest.mark.parametrize("n,length,replays", [(4099, 64, 3), (100003, 200, 5)])
def test_long_dependent_chain_is_exact(device, n, length, replays):
    prog, got, want = _chain(device, n, length, replays)
    np.testing.assert_array_equal(got, want)
    # every dependent dispatch needed a barrier before it (plus the one at the program's start)
    assert prog.n_barriers >= length + 1


def test_recorder_places_barriers_only_where_needed(device):
    n = 257
    a, b, c, d = (device.buffer(np.arange(n, dtype=np.uint32) + k, name=nm) for k, nm in enumerate("abcd"))
    rec = device.recorder()
    assert [s.kind for s in rec.steps] == ["barrier"]   # orders the program after earlier submissions
    with rec.parallel():                       # two independent dispatches reading a: no barrier
        ops.chain_step(rec, b, a)
        ops.chain_step(rec, c, a)
    assert [s.kind for s in rec.steps] == ["barrier", "dispatch", "dispatch"]
    ops.chain_step(rec, d, b)                  # reads b, written above (read-after-write)
    assert rec.steps[-2].kind == "barrier" and rec.steps[-2].label == "b"
    ops.chain_step(rec, a, c)                  # c and the earlier reads of a are behind that global barrier
    assert rec.steps[-2].kind == "dispatch"
    ops.chain_step(rec, b, d)                  # d written and b read since the last barrier
    assert rec.steps[-2].kind == "barrier" and rec.steps[-2].label == "b,d"
    prog = rec.finish()
    prog.run()
    a0 = np.arange(n, dtype=np.uint32)
    want_b = reference.chain_step(reference.chain_step(reference.chain_step(a0)))
    np.testing.assert_array_equal(b.read(), want_b)


def test_write_after_read_gets_a_barrier(device):
    n = 65
    a, b = device.buffer(np.ones(n, np.uint32), name="a"), device.buffer(n, np.uint32, name="b")
    rec = device.recorder()
    ops.chain_step(rec, b, a)       # reads a
    ops.fill_u32(rec, a, value=7)   # writes a, which was read: write-after-read
    assert rec.steps[-2].kind == "barrier" and rec.steps[-2].label == "a"
    rec.finish().run()
    np.testing.assert_array_equal(b.read(), np.full(n, 2, np.uint32))
    np.testing.assert_array_equal(a.read(), np.full(n, 7, np.uint32))


def test_uploads_and_downloads_are_ordered_like_dispatches(device):
    n = 33
    a, b = device.buffer(n, np.uint32, name="a"), device.buffer(n, np.uint32, name="b")
    rec = device.recorder()
    rec.upload(a)                   # a transfer write ...
    ops.chain_step(rec, b, a)       # ... read by a shader: barrier
    assert rec.steps[-2].kind == "barrier" and rec.steps[-2].label == "a"
    rec.download(b)                 # marked; copied at the end, after a barrier (a shader write → a transfer)
    with pytest.raises(VkharpError, match="marked for download"):
        ops.chain_step(rec, b, a)
    prog = rec.finish()
    assert [s.kind for s in prog.steps[-2:]] == ["barrier", "download"] and prog.steps[-2].label == "b"
    assert prog.n_copies == 2
    for k in range(3):              # replays see the new upload each time
        a.host_view()[:] = np.arange(n, dtype=np.uint32) * (k + 1)
        prog.run()
        np.testing.assert_array_equal(b.host_view(), reference.chain_step(np.arange(n, dtype=np.uint32) * (k + 1)))


def test_dependent_dispatches_in_a_parallel_block_are_refused(device):
    a, b = device.buffer(9, np.uint32), device.buffer(9, np.uint32)
    rec = device.recorder()
    with pytest.raises(VkharpError, match="parallel"):
        with rec.parallel():
            ops.chain_step(rec, b, a)
            ops.chain_step(rec, a, b)


def test_store_buffers_can_be_read_where_written(device):
    """With real barriers a device-only buffer (the KV cache) may be written and read in one program."""
    s = device.buffer(16, np.uint32, kind="store", name="cache")
    out = device.buffer(16, np.uint32)
    rec = device.recorder()
    ops.fill_u32(rec, s, value=3)
    ops.chain_step(rec, out, s)
    assert rec.steps[-2].kind == "barrier" and rec.steps[-2].label == "cache"
    rec.finish().run()
    np.testing.assert_array_equal(out.read(), reference.chain_step(np.full(16, 3, np.uint32)))
