"""Host-side launchers: one function per shader op, recording a dispatch into a Recorder.

Each launcher has the same name and argument order as its numpy twin in `engine.reference`,
with the recorder and the output buffer(s) first (output-first, as in llama2.c). Shapes come
from the buffers' `shape`; sizes become specialization constants, fixed at record time.
"""
from .activation import geglu, gelu, silu, swiglu
from .activation_back import glu_back
from .attention import attention, kv_append, kv_cache_buffers
from .attention_seq import attention_back, attention_seq
from .copy_rows import copy_block, gather_rows, scatter_rows
from .elementwise import add, fill_u32, mix, rand_uniform, scale, softcap, softcap_back, split_mix
from .embed import embed
from .embed_back import embed_back
from .local1d import local1d, local1d_back_w, local1d_back_x
from .loss import loss
from .norm import layernorm, rmsnorm
from .norm_back import rmsnorm_back
from .pool import pool_sum
from .probe import chain_step
from .rope import rope, rope_back
from .rows import select_row
from .sample import sample

__all__ = ["copy_block", "gather_rows", "scatter_rows", "geglu", "gelu", "silu", "swiglu", "attention", "kv_append",
           "kv_cache_buffers", "add", "fill_u32", "mix", "rand_uniform", "scale", "softcap", "embed", "local1d",
           "local1d_back_w", "local1d_back_x", "loss", "layernorm", "rmsnorm", "pool_sum", "chain_step", "rope",
           "select_row", "sample",
           # training (issue 14): the layers' backward
           "glu_back", "attention_seq", "attention_back", "softcap_back", "embed_back", "rmsnorm_back", "rope_back"]
