"""numpy twins of every shader: same name and argument order as `engine.ops`, minus the recorder and
the outputs, which they return. They define what each shader must compute (float64 inside unless
the shader's rounding is the point)."""
from .activation import geglu, gelu, silu, swiglu
from .attention import attention, kv_append
from .elementwise import add, fill_u32, mix, neg_abs, rand_uniform, scale
from .embed import embed
from .local1d import local1d
from .norm import layernorm, rmsnorm
from .pool import pool_sum
from .probe import chain_step
from .rope import rope
from .rows import select_row
from .sample import sample

__all__ = ["geglu", "gelu", "silu", "swiglu", "attention", "kv_append", "add", "fill_u32", "mix", "neg_abs", "rand_uniform",
           "scale", "embed", "local1d", "layernorm", "rmsnorm", "pool_sum", "chain_step", "rope", "select_row", "sample"]
