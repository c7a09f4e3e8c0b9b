"""vkharp_local1d: a Llama decoder whose MLP is made of Local1D layers (seed idea 10), not dense matrices.

The seed's claim is that the number of neurons matters more than the number of parameters, and that a
layer whose cost is linear in its width can be hundreds of times wider. This architecture tests it at
model scale: everything but the MLP is Llama's (RMSNorm, RoPE, GQA attention with dense q/k/v/o, a dense
head), and each layer's MLP is

    xn   = rmsnorm(x) * w_post_attention_layernorm
    gate = Local1D(hidden → F units, window K_in)(xn)      mlp.gate_local1d.weight [F, K_in]
    up   = Local1D(hidden → F units, window K_in)(xn)      mlp.up_local1d.weight   [F, K_in]
    x   += Local1D(F → hidden units, window K_out)(silu(gate) * up)   mlp.down_local1d.weight [hidden, K_out]

with Local1D exactly as shaders/local1d.comp computes it: unit i sees the K inputs from
start(i) = floor(i * (in - K + 1) / units). F is `intermediate_size` (HF's name for the MLP width; it may
be many times `hidden_size`, at 2·F·K_in + hidden·K_out parameters per layer instead of 3·hidden·F).

Config fields beyond Llama's (config.json):
- `local1d_kernel` (required): K_in, the window of the gate and up units over the hidden features.
- `local1d_down_kernel` (optional): K_out, the window of the down units over the F MLP units; by default
  the smallest window that leaves no gap between neighbouring down windows (`min_down_kernel`, about
  F / hidden). Smaller ones would leave whole runs of MLP units that no output reads: refused.
- `output_convention`: "logits" (default) or "target-only" (seed idea 1: the head's outputs y are
  distances and the prediction is the token whose |y| is smallest). The engine's logits of a
  target-only model are -|y| (one element-wise dispatch after the head), so greedy decoding is
  argmin |y|, sampling draws from softmax(-|y| / T), and every path that reads logits (chat, bench,
  perplexity, HARP, rollback) works unchanged; the trainer reads y itself (engine/tune/local1d_torch.py).

Why no channel permutation between the Local1D layers: one MLP alone is a banded map (output j reads
features near j), but the model is not a pure Local1D stack. Its attention projections are dense, so each
layer's attention block writes every feature of a token from every feature (v and o are dense, and a
token attends to itself), and RMSNorm couples all features through its scale: features that should meet
in an MLP window can be routed next to each other by o_proj, which is learned. A fixed permutation shared
by all layers would be absorbed by the dense weights (embedding, q/k/v/o, head) and the element-wise norms,
so it would change nothing; per-layer permutations would cost a gather dispatch per layer and a backward
for it, for a routing the dense projections can already learn. The MLP stays three plain Local1D layers,
the kernel and the gradients of the existing shader.

Inherent to the window rule: a contracting layer (down: F units in, hidden out) reaches its input only up
to start(hidden - 1) + K_out, so the last ceil((F - K_out + 1) / hidden) - 1 MLP units are read by no
output (about F / hidden of F; `unread_units`). They are counted as parameters all the same.

Local1D weights are stored f32 whatever --dtype asks (the kernel reads f32); the attention matrices and
the embeddings are converted as the dtype says. No GGUF form exists for this architecture.
"""
from __future__ import annotations

from engine.errors import VkharpError
from engine.reference.local1d import window_starts

from .base import Architecture
from .config import ModelConfig

MODEL_TYPE = "vkharp_local1d"
OUTPUT_CONVENTIONS = ("logits", "target-only")
ROLES = ("mlp.gate_local1d.weight", "mlp.up_local1d.weight", "mlp.down_local1d.weight")
_DENSE_MLP = ("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")


def min_down_kernel(units_in: int, units_out: int) -> int:
    """The smallest K for which neighbouring windows of a units_in → units_out Local1D leave no gap:
    consecutive starts differ by at most ceil((units_in - K + 1) / units_out) <= K."""
    for k in range(1, units_in + 1):
        if -(-(units_in - k + 1) // units_out) <= k:
            return k
    return units_in


def _int_field(cfg: ModelConfig, key: str, default=None) -> int:
    v = cfg.raw.get(key, default)
    if v is None:
        raise VkharpError(f"config.json ({MODEL_TYPE}) lacks {key!r}, the Local1D window of the MLP's "
                          f"gate and up units over the hidden features (a positive integer <= hidden_size)")
    if isinstance(v, bool) or not isinstance(v, int):
        raise VkharpError(f"config.json ({MODEL_TYPE}): {key} must be an integer, got {v!r}")
    return v


class Local1DArchitecture(Architecture):
    def kernels(self, cfg: ModelConfig) -> tuple[int, int]:
        """(K_in, K_out): the gate/up window over hidden, the down window over the F MLP units."""
        k_in = _int_field(cfg, "local1d_kernel")
        k_out = _int_field(cfg, "local1d_down_kernel", min_down_kernel(cfg.intermediate_size, cfg.hidden_size))
        return k_in, k_out

    def output_convention(self, cfg: ModelConfig) -> str:
        return cfg.raw.get("output_convention") or "logits"

    def validate(self, cfg: ModelConfig) -> None:
        super().validate(cfg)
        h, f = cfg.hidden_size, cfg.intermediate_size
        k_in, k_out = self.kernels(cfg)
        for key, k, width, what in (("local1d_kernel", k_in, h, "hidden_size"),
                                    ("local1d_down_kernel", k_out, f, "intermediate_size (the MLP width)")):
            if k < 1:
                raise VkharpError(f"config.json ({MODEL_TYPE}): {key} must be >= 1, got {k}")
            if k > width:
                raise VkharpError(f"config.json ({MODEL_TYPE}): {key} {k} is wider than {what} {width}: "
                                  f"a Local1D unit's window lies within its input")
        need = min_down_kernel(f, h)
        if k_out < need:
            raise VkharpError(f"config.json ({MODEL_TYPE}): local1d_down_kernel {k_out} leaves MLP units that no "
                              f"output reads (the {h} down windows step by up to "
                              f"{-(-(f - k_out + 1) // h)} of the {f} units); use at least {need}, or leave it out")
        conv = self.output_convention(cfg)
        if conv not in OUTPUT_CONVENTIONS:
            raise VkharpError(f"config.json ({MODEL_TYPE}): output_convention must be one of "
                              f"{', '.join(OUTPUT_CONVENTIONS)}, got {conv!r}")

    def unread_units(self, cfg: ModelConfig) -> int:
        """MLP units of a layer that no down window reads (the window rule's tail, see the module doc)."""
        f, (_, k_out) = cfg.intermediate_size, self.kernels(cfg)
        return f - int(window_starts(f, k_out, cfg.hidden_size)[-1]) - k_out

    def layer_tensor_shapes(self, cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
        t = {k: v for k, v in super().layer_tensor_shapes(cfg).items() if k not in _DENSE_MLP}
        k_in, k_out = self.kernels(cfg)
        f, h = cfg.intermediate_size, cfg.hidden_size
        t.update({ROLES[0]: (f, k_in), ROLES[1]: (f, k_in), ROLES[2]: (h, k_out)})
        return t

    def stored_f32(self, hf_name: str) -> bool:
        return hf_name.endswith(ROLES)

    def gguf_names(self, cfg: ModelConfig) -> dict[str, str]:
        raise VkharpError(f"{MODEL_TYPE} has no GGUF form; convert its safetensors checkpoint")


LOCAL1D = Local1DArchitecture(name=MODEL_TYPE, activation="silu", mlp="local1d")
