"""Qwen3 (dense): the Llama layer without biases, with a per-head RMSNorm on q and k over head_dim
before RoPE (the runtime's qk_norm, as Gemma 3 but with plain weights); GGUF Q/K rows not permuted."""
from .base import Architecture


class Qwen3(Architecture):
    def gguf_layer_names(self) -> dict[str, str]:
        t = super().gguf_layer_names()
        t.update({"attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight"})
        return t


QWEN3 = Qwen3(name="qwen3", activation="silu", qk_norm=True, gguf_arch="qwen3")
