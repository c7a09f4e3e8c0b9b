"""Gemma 2: Gemma 3's layer without the q/k norms, with soft-capped attention scores and logits.

Per layer: the same four RMSNorms as Gemma 3 (input, post-attention, pre- and post-feed-forward), each
x / rms(x) * (1 + w_hf) (the converter stores 1 + w; llama.cpp's GGUFs already hold it); embeddings
scaled by sqrt(hidden_size); scores q·k * query_pre_attn_scalar**-0.5, then 50 * tanh(s / 50)
(attn_logit_softcapping) in shaders/attention.comp; logits 30 * tanh(l / 30) (final_logit_softcapping)
after the head; even layers (0, 2, ...) slide over `sliding_window` positions, odd ones are global;
one rope_theta for all layers.
"""
from .base import Architecture


class Gemma2(Architecture):
    def gguf_layer_names(self) -> dict[str, str]:
        t = super().gguf_layer_names()
        t.update({
            "post_attention_norm.weight": "post_attention_layernorm.weight",
            "ffn_norm.weight": "pre_feedforward_layernorm.weight",
            "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
        })
        return t


GEMMA2 = Gemma2(name="gemma2", activation="gelu_tanh", sandwich_norms=True, norm_offset=1.0,
                scaled_embedding=True, gguf_arch="gemma2")
