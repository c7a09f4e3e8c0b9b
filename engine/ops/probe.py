"""Launcher for the synchronisation probe (shaders/chain_step.comp)."""
from ..device import Buffer, Recorder, grid1d


def chain_step(rec: Recorder, out: Buffer, x: Buffer, *, stride: int = 7919, add: int = 1, wg: int = 64):
    """out[i] = x[(i·stride) mod n] + add: the synchronisation probe of tests/test_barriers.py."""
    rec.dispatch("chain_step", [out, x], grid1d(rec.device, out.size, wg),
                 {"WG": wg, "N": out.size, "STRIDE": stride, "ADD": add})
