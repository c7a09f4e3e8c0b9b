"""Launcher for shaders/activation_back.comp: the gated MLP activation's backward (training)."""
import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError

VARIANTS = {"silu": "swiglu_back", "gelu_tanh": "geglu_back"}


def glu_back(rec: Recorder, dgate: Buffer, dup: Buffer, gate: Buffer, up: Buffer, dmlp: Buffer, *,
             act: str = "silu", wg: int = 256):
    """dgate = dmlp * up * act'(gate), dup = dmlp * act(gate): the backward of mlp = act(gate) * up
    (act as models/base.py names it: "silu" for SwiGLU, "gelu_tanh" for GeGLU). Shapes [T, F]."""
    if act not in VARIANTS:
        raise VkharpError(f"glu_back: act must be one of {', '.join(VARIANTS)}, got {act!r}")
    bufs = {"dgate": dgate, "dup": dup, "gate": gate, "up": up, "dmlp": dmlp}
    for name, b in bufs.items():
        if b.dtype != np.float32:
            raise VkharpError(f"glu_back: {name} ({b.name!r}) must be f32, got {b.dtype}")
    if len({b.size for b in bufs.values()}) != 1:
        raise VkharpError("glu_back: sizes do not agree: " + ", ".join(f"{k} {b.shape}" for k, b in bufs.items()))
    if dgate is dup or any(o is i for o in (dgate, dup) for i in (gate, up, dmlp)):
        raise VkharpError("glu_back: dgate and dup must be buffers of their own (not each other or an input)")
    n = gate.size
    rec.dispatch(VARIANTS[act], [dgate, dup, gate, up, dmlp], grid1d(rec.device, n, wg), {"WG": wg, "N": n})
