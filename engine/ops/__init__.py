"""Host-side launchers: one function per shader op, recording a dispatch into a Recorder.

Each launcher has the same name and argument order as its numpy twin in `engine.reference`,
with the recorder and the output buffer(s) first (output-first, as in llama2.c). Shapes come
from the buffers' `shape`; sizes become specialization constants, fixed at record time.
"""
from .activation import geglu, gelu, silu, swiglu
from .adamw import adamw, pack_hyper, zero_counts
from .attention import attention, kv_append, kv_cache_buffers
from .copy_rows import copy_block, gather_rows, scatter_rows
from .elementwise import add, fill_u32, mix, rand_uniform, scale, softcap, split_mix
from .embed import embed
from .grad_weight import grad_weight
from .local1d import local1d, local1d_back_w, local1d_back_x
from .loss import loss
from .matmul_t import matmul_t
from .norm import layernorm, rmsnorm
from .pool import pool_sum
from .probe import chain_step
from .rope import rope
from .rows import select_row
from .sample import sample
from .sum_squares import sum_squares, sum_squares_groups

__all__ = ["copy_block", "gather_rows", "scatter_rows", "geglu", "gelu", "silu", "swiglu", "attention", "kv_append",
           "kv_cache_buffers", "add", "fill_u32", "mix", "rand_uniform", "scale", "softcap", "embed", "local1d",
           "local1d_back_w", "local1d_back_x", "loss", "layernorm", "rmsnorm", "pool_sum", "chain_step", "rope",
           "select_row", "sample", "adamw", "pack_hyper", "zero_counts", "grad_weight", "matmul_t", "sum_squares",
           "sum_squares_groups"]
