"""Layout of the per-step parameter buffer (mirrors shaders/include/params.glsl).

kp fixes push and specialization constants when a dispatch is recorded, so every value that changes
from one replay to the next lives in this small uint32 buffer, written on the host before each
replay (a "param" buffer the shaders read directly, or an act buffer uploaded by the program).
"""
import numpy as np

STEP_FIELDS = {"pos": 0, "n_tokens": 1, "seed": 2, "drop_on": 3, "drop_p": 4}
FLOAT_FIELDS = {"drop_p"}
STEP_WORDS = 8


def pack_step(**values) -> np.ndarray:
    """A STEP_WORDS uint32 array; unknown names raise KeyError, floats are stored as bits."""
    out = np.zeros(STEP_WORDS, dtype=np.uint32)
    for name, v in values.items():
        i = STEP_FIELDS[name]
        out[i] = np.float32(v).view(np.uint32) if name in FLOAT_FIELDS else np.uint32(v)
    return out


def write_step(buf, **values) -> None:
    """Write step values into a step buffer's host memory (param buffers: read as they are)."""
    buf.host_view()[:STEP_WORDS] = pack_step(**values)
