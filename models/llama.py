"""Llama family: Llama 2/3/3.1/3.2 (incl. llama3 RoPE scaling), SmolLM, TinyLlama; Mistral is an alias.

Pre-norm decoder: x += o_proj(attn(rope(q), rope(k), v)) on input_layernorm(x); x += down(silu(gate) * up)
on post_attention_layernorm(x). llama.cpp permutes Q/K rows in `llama` GGUFs (its RoPE is interleaved).
"""
from .base import Architecture

LLAMA = Architecture(name="llama", activation="silu", gguf_qk_permuted=True, gguf_arch="llama")

# Mistral differs from Llama only by its sliding window, which ModelConfig reads (layer_window).
MISTRAL = Architecture(name="mistral", activation="silu", gguf_qk_permuted=True, gguf_arch="llama")
