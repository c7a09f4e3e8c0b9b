"""Phi-3 and Phi-4-mini (`phi3`): the Llama layer with fused projections and longrope RoPE scaling.

Checkpoints hold self_attn.qkv_proj ([q; k; v] rows) and mlp.gate_up_proj ([gate; up] rows); the
converter splits them into the shared names (Architecture.fused_splits). longrope: short and long
factor sets, the long one when the loaded context passes original_max_position_embeddings, and an
attention factor folded into the attention scale (models/rope.py). Phi-4-mini rotates only the first
3/4 of each head (partial_rotary_factor). A sliding_window in the config applies to every layer.
GGUF (llama.cpp): attn_qkv and ffn_up hold the fused tensors; rope_factors_long / rope_factors_short
are rebuilt into config.json; Q/K rows are not permuted (NeoX RoPE).
"""
from .base import Architecture


class Phi3(Architecture):
    def gguf_layer_names(self) -> dict[str, str]:
        t = {g: h for g, h in super().gguf_layer_names().items()
             if g not in ("attn_q.weight", "attn_k.weight", "attn_v.weight", "ffn_gate.weight")}
        t.update({"attn_qkv.weight": "self_attn.qkv_proj.weight", "ffn_up.weight": "mlp.gate_up_proj.weight"})
        return t


PHI3 = Phi3(name="phi3", activation="silu", fused_projections=True, partial_rotary=True,
            gguf_arch="phi3")
