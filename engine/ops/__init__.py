"""Host-side launchers: one function per shader op, recording a dispatch into a Recorder.

Each launcher has the same name and argument order as its numpy twin in `engine.reference`,
with the recorder and the output buffer(s) first (output-first, as in llama2.c). Shapes come
from the buffers' `shape`; sizes become specialization constants, fixed at record time.
"""
from .elementwise import fill_u32  # noqa: F401
from .probe import chain_step  # noqa: F401
from .norm import layernorm, rmsnorm  # noqa: F401
