"""Launchers for simple element-wise shaders."""
from ..device import Buffer, Recorder, grid1d


def fill_u32(rec: Recorder, out: Buffer, *, value: int = 0, wg: int = 256):
    rec.dispatch("fill_u32", [out], grid1d(rec.device, out.size, wg), {"WG": wg, "N": out.size, "VALUE": value})


def chain_step(rec: Recorder, out: Buffer, x: Buffer, *, stride: int = 7919, add: int = 1, wg: int = 64):
    """out[i] = x[(i·stride) mod n] + add: the synchronisation probe of tests/test_barriers.py."""
    rec.dispatch("chain_step", [out, x], grid1d(rec.device, out.size, wg),
                 {"WG": wg, "N": out.size, "STRIDE": stride, "ADD": add})
