"""What the runtime needs to know about an architecture, beyond the numbers in its config.

An `Architecture` is data plus small rules: which norm/activation/bias/scales a layer uses, which
tensors exist (HF names verbatim, with their shapes) and how GGUF names them. The runtime reads it;
the converter checks a checkpoint against `tensor_shapes` and maps GGUF names with `gguf_names`.

Conventions every architecture shares (so the runtime has one code path):
- Weight matrices are [out_features, in_features] (HF's nn.Linear layout), embeddings [vocab, hidden].
- Norm weights are the *effective* multipliers: y = x / rms(x) * w. Gemma's HF checkpoints store
  w - 1 (they compute x * (1 + w)); the converter adds 1 (`norm_offset`).
- RoPE is HF's half-split form (rotate_half) for every architecture: the converter undoes
  llama.cpp's Q/K row permutation when reading `llama` GGUFs.
- Fused projections (Phi-3's qkv_proj, gate_up_proj) are split at conversion into the q/k/v and
  gate/up names every architecture shares (`fused_splits`); the runtime fuses again at load on its own.
- A layer without RoPE (SmolLM3's NoPE layers) gets a row of zero frequencies: rotating by the angle 0
  multiplies by cos 0 = 1 and sin 0 = 0 exactly, so the vector passes bit for bit.
- A sliding window W means a query at position p sees keys at positions p-W+1 .. p (HF's and
  llama.cpp's meaning); window 0 means global attention.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.errors import VkharpError

from .config import ModelConfig
from .rope import attention_factor, inv_freq

# HF activation names → ours.
ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_tanh": "gelu_tanh"}
# RoPE scaling types the runtime implements (models/rope.py); "default" = none.
ROPE_TYPES = ("default", "linear", "llama3", "longrope")


@dataclass(frozen=True)
class Architecture:
    name: str
    activation: str = "silu"          # "silu" (SwiGLU MLP) | "gelu_tanh" (GeGLU, tanh approximation)
    norm: str = "rms"
    qkv_bias: bool = False            # q/k/v projections carry biases (qwen2)
    qk_norm: bool = False             # per-head RMSNorm over head_dim on q and k, before RoPE (gemma3)
    sandwich_norms: bool = False      # gemma3: post-attention and pre/post-feed-forward norms
    norm_offset: float = 0.0          # HF stores w - norm_offset; the converter writes the effective w
    scaled_embedding: bool = False    # embeddings multiplied by sqrt(hidden_size) (gemma)
    gguf_qk_permuted: bool = False    # llama.cpp permutes Q/K rows of this arch in GGUF files
    gguf_arch: str = ""               # general.architecture in GGUF files
    fused_projections: bool = False   # checkpoints hold qkv_proj and gate_up_proj (phi3): split at conversion
    partial_rotary: bool = False      # transformers rotates only partial_rotary_factor of each head (phi3)
    mlp: str = "dense"                # "dense" (gate/up/down matrices) | "local1d" (models/local1d.py)

    # ---- per-model numbers -------------------------------------------------------------------
    def validate(self, cfg: ModelConfig) -> None:
        """Refuse configs this runtime would compute wrongly (an unsupported activation, RoPE type...)."""
        act = ACTIVATIONS.get(cfg.hidden_act)
        if act != self.activation:
            raise VkharpError(f"{cfg.model_type}: activation {cfg.hidden_act!r} is not supported "
                              f"(this architecture runs {self.activation})")
        for i in range(cfg.num_hidden_layers):
            s = self.layer_rope_scaling(cfg, i)
            if s is not None and s.get("rope_type") not in ROPE_TYPES:
                raise VkharpError(f"{cfg.model_type}: RoPE scaling {s.get('rope_type')!r} is not supported "
                                  f"(supported: {', '.join(ROPE_TYPES)})")
        if cfg.partial_rotary_factor != 1.0 and not self.partial_rotary:
            raise VkharpError(f"{cfg.model_type}: partial_rotary_factor {cfg.partial_rotary_factor} is not supported "
                              f"for this architecture (only phi3 rotates part of each head)")
        if cfg.raw.get("mlp_bias"):
            raise VkharpError(f"{cfg.model_type}: mlp_bias=true is not supported")
        if cfg.attention_bias and not self.qkv_bias:
            raise VkharpError(f"{cfg.model_type}: attention_bias=true is not supported for this architecture")

    def output_convention(self, cfg: ModelConfig) -> str:
        """How the head's outputs are read: "logits", or "target-only" (distances; models/local1d.py)."""
        return "logits"

    def embed_scale(self, cfg: ModelConfig) -> float:
        return math.sqrt(cfg.hidden_size) if self.scaled_embedding else 1.0

    def attn_scale(self, cfg: ModelConfig) -> float:
        """Multiplier of q·k: query_pre_attn_scalar**-0.5 where the config has it, else head_dim**-0.5."""
        return float(cfg.query_pre_attn_scalar or cfg.head_dim) ** -0.5

    def rope_q_scale(self, cfg: ModelConfig, i: int) -> float:
        """Multiplier of q's rotated dims after RoPE: longrope's attention factor squared. HF multiplies
        cos and sin by the factor, i.e. the rotated dims of both q and k; with partial rotary the other
        dims are not scaled, so it cannot go into the attention scale. Scaling q alone by its square
        gives the same scores and keeps the cached keys plain."""
        af = attention_factor(self.layer_rope_scaling(cfg, i), cfg.max_position_embeddings)
        return af * af

    def attn_softcap(self, cfg: ModelConfig) -> float:
        """Attention logit soft-cap (0 = none): s = cap * tanh(s / cap) after scaling (Gemma 2)."""
        return float(cfg.attn_logit_softcapping or 0.0)

    def final_softcap(self, cfg: ModelConfig) -> float:
        """Final logit soft-cap (0 = none): logits = cap * tanh(logits / cap) (Gemma 2)."""
        return float(cfg.final_logit_softcapping or 0.0)

    def layer_type(self, cfg: ModelConfig, i: int) -> str:
        return cfg.layer_types[i] if cfg.layer_types else "full_attention"

    def layer_window(self, cfg: ModelConfig, i: int) -> int:
        """Sliding-window size of layer i (0 = global attention)."""
        if self.layer_type(cfg, i) == "sliding_attention" and cfg.sliding_window:
            return int(cfg.sliding_window)
        return 0

    def layer_rope_theta(self, cfg: ModelConfig, i: int) -> float:
        if self.layer_type(cfg, i) == "sliding_attention" and cfg.rope_local_base_freq is not None:
            return cfg.rope_local_base_freq
        return cfg.rope_theta

    def layer_rope_scaling(self, cfg: ModelConfig, i: int) -> dict | None:
        """The rope scaling dict of layer i (None = plain); layers with a local theta use none."""
        if self.layer_type(cfg, i) == "sliding_attention" and cfg.rope_local_base_freq is not None:
            return None
        return cfg.rope_scaling

    def layer_inv_freq(self, cfg: ModelConfig, i: int, ctx: int | None = None):
        """f32[rotary_dim/2] RoPE inverse frequencies of layer i, as transformers computes them; zeros
        for a layer without RoPE. ctx (the loaded context) picks longrope's factor set (models/rope.py)."""
        f = inv_freq(cfg.head_dim, self.layer_rope_theta(cfg, i), self.layer_rope_scaling(cfg, i),
                     partial_rotary_factor=cfg.partial_rotary_factor, ctx=ctx)
        if cfg.no_rope_layers is not None and not cfg.no_rope_layers[i]:
            return np.zeros_like(f)
        return f

    # ---- tensors -----------------------------------------------------------------------------
    def layer_tensor_shapes(self, cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
        """One layer's tensors, names relative to model.layers.{i}."""
        h, hd = cfg.hidden_size, cfg.head_dim
        q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
        t = {
            "input_layernorm.weight": (h,),
            "self_attn.q_proj.weight": (q, h),
            "self_attn.k_proj.weight": (kv, h),
            "self_attn.v_proj.weight": (kv, h),
            "self_attn.o_proj.weight": (h, q),
            "post_attention_layernorm.weight": (h,),
            "mlp.gate_proj.weight": (cfg.intermediate_size, h),
            "mlp.up_proj.weight": (cfg.intermediate_size, h),
            "mlp.down_proj.weight": (h, cfg.intermediate_size),
        }
        if self.qkv_bias:
            t.update({"self_attn.q_proj.bias": (q,), "self_attn.k_proj.bias": (kv,), "self_attn.v_proj.bias": (kv,)})
        if self.qk_norm:
            t.update({"self_attn.q_norm.weight": (hd,), "self_attn.k_norm.weight": (hd,)})
        if self.sandwich_norms:
            t.update({"pre_feedforward_layernorm.weight": (h,), "post_feedforward_layernorm.weight": (h,)})
        return t

    def tensor_shapes(self, cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
        """Every tensor the runtime reads, HF names verbatim → shape."""
        out = {"model.embed_tokens.weight": (cfg.vocab_size, cfg.hidden_size)}
        layer = self.layer_tensor_shapes(cfg)
        for i in range(cfg.num_hidden_layers):
            out.update({f"model.layers.{i}.{k}": v for k, v in layer.items()})
        out["model.norm.weight"] = (cfg.hidden_size,)
        if not cfg.tie_word_embeddings:
            out["lm_head.weight"] = (cfg.vocab_size, cfg.hidden_size)
        return out

    def n_params(self, cfg: ModelConfig) -> int:
        """Parameters of the model as stored (a tied head counted once)."""
        return sum(math.prod(s) for s in self.tensor_shapes(cfg).values())

    def stored_f32(self, hf_name: str) -> bool:
        """Tensors the converter keeps f32 whatever dtype it is asked for (kernels that read only f32)."""
        return False

    def fused_splits(self, cfg: ModelConfig) -> dict[str, list[tuple[str, int, int]]]:
        """Fused tensor (relative to model.layers.{i}) → [(part's name, first row, end row)]: the rows
        of each part, in the order transformers slices them (q, k, v; gate, up)."""
        if not self.fused_projections:
            return {}
        q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
        f = cfg.intermediate_size
        return {"self_attn.qkv_proj.weight": [("self_attn.q_proj.weight", 0, q),
                                              ("self_attn.k_proj.weight", q, q + kv),
                                              ("self_attn.v_proj.weight", q + kv, q + 2 * kv)],
                "mlp.gate_up_proj.weight": [("mlp.gate_proj.weight", 0, f), ("mlp.up_proj.weight", f, 2 * f)]}

    def is_norm(self, hf_name: str) -> bool:
        return hf_name.endswith("norm.weight")

    # GGUF per-layer names → HF names (relative to the layer); architectures extend it.
    def gguf_layer_names(self) -> dict[str, str]:
        t = {
            "attn_norm.weight": "input_layernorm.weight",
            "attn_q.weight": "self_attn.q_proj.weight",
            "attn_k.weight": "self_attn.k_proj.weight",
            "attn_v.weight": "self_attn.v_proj.weight",
            "attn_output.weight": "self_attn.o_proj.weight",
            "ffn_norm.weight": "post_attention_layernorm.weight",
            "ffn_gate.weight": "mlp.gate_proj.weight",
            "ffn_up.weight": "mlp.up_proj.weight",
            "ffn_down.weight": "mlp.down_proj.weight",
        }
        if self.qkv_bias:
            t.update({"attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias",
                      "attn_v.bias": "self_attn.v_proj.bias"})
        return t

    def gguf_names(self, cfg: ModelConfig) -> dict[str, str]:
        """GGUF tensor name → HF name, for exactly the tensors of `tensor_shapes(cfg)`."""
        out = {"token_embd.weight": "model.embed_tokens.weight"}
        layer = self.gguf_layer_names()
        for i in range(cfg.num_hidden_layers):
            out.update({f"blk.{i}.{g}": f"model.layers.{i}.{h}" for g, h in layer.items()})
        out["output_norm.weight"] = "model.norm.weight"
        if not cfg.tie_word_embeddings:
            out["output.weight"] = "lm_head.weight"
        return out
