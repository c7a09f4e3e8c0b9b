"""SmolLM3: the Llama layer where every 4th layer has no RoPE (`no_rope_layers`, 0 = NoPE).

NoPE layers get zero inverse frequencies (Architecture.layer_inv_freq): the rotation is then the
identity, bit for bit. llama.cpp writes `smollm3` GGUFs with Llama's Q/K row permutation and no
metadata for the NoPE layers (it hard-codes every 4th): the default interval applies.
"""
from .base import Architecture

SMOLLM3 = Architecture(name="smollm3", activation="silu", gguf_qk_permuted=True, gguf_arch="smollm3")
