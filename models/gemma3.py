"""Gemma 3, text part (Gemma3ForCausalLM / gemma3_text, or the language model of
Gemma3ForConditionalGeneration).

Per layer:  h = input_layernorm(x); q, k, v = proj(h); q, k = q_norm(q), k_norm(k) (per head, over head_dim);
            rope (local theta on sliding layers); a = o_proj(attn(q, k, v) * query_pre_attn_scalar**-0.5)
            x += post_attention_layernorm(a)
            h = pre_feedforward_layernorm(x); x += post_feedforward_layernorm(down(gelu_tanh(gate(h)) * up(h)))
Embeddings are scaled by sqrt(hidden_size); every norm is x / rms(x) * (1 + w_hf): the converter stores 1 + w
(GGUF files from llama.cpp already hold 1 + w). Sliding layers follow layer_types (5 local : 1 global).
"""
from .base import Architecture


class Gemma3(Architecture):
    def gguf_layer_names(self) -> dict[str, str]:
        t = super().gguf_layer_names()
        t.update({
            "attn_q_norm.weight": "self_attn.q_norm.weight",
            "attn_k_norm.weight": "self_attn.k_norm.weight",
            "post_attention_norm.weight": "post_attention_layernorm.weight",
            "ffn_norm.weight": "pre_feedforward_layernorm.weight",
            "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
        })
        return t


GEMMA3 = Gemma3(name="gemma3", activation="gelu_tanh", qk_norm=True, sandwich_norms=True, norm_offset=1.0,
                scaled_embedding=True, gguf_arch="gemma3")
