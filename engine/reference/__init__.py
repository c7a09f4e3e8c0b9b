"""numpy twins of every shader: same name and argument order as `engine.ops`, minus the recorder and
the outputs, which they return. They define what each shader must compute (float64 inside unless
the shader's rounding is the point)."""
from .elementwise import fill_u32  # noqa: F401
from .probe import chain_step  # noqa: F401
from .norm import layernorm, rmsnorm  # noqa: F401
