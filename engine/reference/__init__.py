"""numpy twins of every shader: same name and argument order as `engine.ops`, minus the recorder and
the outputs, which they return. They define what each shader must compute (float64 inside unless
the shader's rounding is the point)."""
from .activation import geglu, gelu, silu, swiglu
from .activation_back import glu_back
from .adamw import adamw
from .attention import attention, kv_append
from .attention_seq import attention_back, attention_seq
from .copy_rows import copy_block, gather_rows, scatter_rows
from .elementwise import add, fill_u32, mix, neg_abs, rand_uniform, scale, softcap, softcap_back
from .embed import embed
from .embed_back import embed_back
from .grad_weight import grad_weight
from .local1d import local1d, local1d_back_w, local1d_back_x, local1d_swiglu
from .loss import loss
from .matmul_t import matmul_t
from .norm import layernorm, rmsnorm
from .norm_back import rmsnorm_back
from .pool import pool_sum
from .probe import chain_step
from .rope import rope, rope_back
from .rows import select_row
from .sample import sample
from .sum_squares import sum_squares

__all__ = ["geglu", "gelu", "silu", "swiglu", "glu_back", "adamw", "attention", "kv_append", "attention_back",
           "attention_seq", "copy_block", "gather_rows", "scatter_rows", "add", "fill_u32", "mix", "neg_abs",
           "rand_uniform", "scale", "softcap", "softcap_back", "embed", "embed_back", "grad_weight",
           "local1d", "local1d_back_w", "local1d_back_x", "local1d_swiglu", "loss", "matmul_t", "layernorm",
           "rmsnorm", "rmsnorm_back", "pool_sum", "chain_step", "rope", "rope_back", "select_row", "sample",
           "sum_squares"]
