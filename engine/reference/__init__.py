"""numpy twins of every shader: same name and argument order as `engine.ops`, minus the recorder and
the outputs, which they return. They define what each shader must compute (float64 inside unless
the shader's rounding is the point)."""
from .activation import geglu, gelu, silu, swiglu
from .adamw import adamw
from .attention import attention, kv_append
from .copy_rows import copy_block, gather_rows, scatter_rows
from .elementwise import add, fill_u32, mix, rand_uniform, scale
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
from .sum_squares import sum_squares

__all__ = ["copy_block", "gather_rows", "scatter_rows", "geglu", "gelu", "silu", "swiglu", "attention", "kv_append",
           "add", "fill_u32", "mix", "rand_uniform", "scale", "embed", "local1d", "local1d_back_w", "local1d_back_x",
           "loss", "layernorm", "rmsnorm", "pool_sum", "chain_step", "rope", "select_row", "sample", "adamw",
           "grad_weight", "matmul_t", "sum_squares"]
