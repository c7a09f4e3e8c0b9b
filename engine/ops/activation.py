"""Launchers for shaders/activation.comp: gated MLP activations (SwiGLU, GeGLU) and plain SiLU/GELU.

`out` may be one of the inputs (each element is read, then written, by the same invocation)."""
import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError

GELU_APPROXIMATIONS = ("tanh", "none")  # torch's names: "none" is the exact erf GELU


def _check(op: str, **bufs: Buffer):
    for name, b in bufs.items():
        if b.dtype != np.float32:
            raise VkharpError(f"{op}: {name} ({b.name!r}) must be f32, got {b.dtype}")
    if len({b.size for b in bufs.values()}) != 1:
        raise VkharpError(f"{op}: sizes do not agree: " + ", ".join(f"{k} {b.shape}" for k, b in bufs.items()))


def _gelu_variant(op: str, approximate: str) -> str:
    if approximate not in GELU_APPROXIMATIONS:
        raise VkharpError(f"{op}: approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}")
    return op if approximate == "tanh" else op + "_erf"


def _go(rec: Recorder, variant: str, buffers: list, wg: int):
    n = buffers[0].size
    rec.dispatch(variant, buffers, grid1d(rec.device, n, wg), {"WG": wg, "N": n})


def swiglu(rec: Recorder, out: Buffer, gate: Buffer, up: Buffer, *, wg: int = 256):
    """out = silu(gate) * up (Llama, Mistral, Qwen MLPs); shapes [N, F]."""
    _check("swiglu", out=out, gate=gate, up=up)
    _go(rec, "swiglu", [out, gate, up], wg)


def geglu(rec: Recorder, out: Buffer, gate: Buffer, up: Buffer, *, approximate: str = "tanh", wg: int = 256):
    """out = gelu(gate) * up (Gemma: approximate="tanh", HF "gelu_pytorch_tanh"); shapes [N, F]."""
    _check("geglu", out=out, gate=gate, up=up)
    _go(rec, _gelu_variant("geglu", approximate), [out, gate, up], wg)


def silu(rec: Recorder, out: Buffer, x: Buffer, *, wg: int = 256):
    _check("silu", out=out, x=x)
    _go(rec, "silu", [out, x], wg)


def gelu(rec: Recorder, out: Buffer, x: Buffer, *, approximate: str = "tanh", wg: int = 256):
    """out = gelu(x) (GPT-2, Phi MLPs)."""
    _check("gelu", out=out, x=x)
    _go(rec, _gelu_variant("gelu", approximate), [out, x], wg)
