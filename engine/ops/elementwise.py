"""Launchers for simple element-wise shaders."""
from ..device import Buffer, Recorder, grid1d


def fill_u32(rec: Recorder, out: Buffer, *, value: int = 0, wg: int = 256):
    rec.dispatch("fill_u32", [out], grid1d(rec.device, out.size, wg), {"WG": wg, "N": out.size, "VALUE": value})
