"""Qwen2 / Qwen2.5: the Llama layer with biases on the q/k/v projections; GGUF Q/K rows are not permuted."""
from .base import Architecture

QWEN2 = Architecture(name="qwen2", activation="silu", qkv_bias=True, gguf_arch="qwen2")
