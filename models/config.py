"""One config dataclass for every supported model, read from a HF config.json with HF's field names.

`ModelConfig.from_hf(d)` accepts what transformers 4 and 5 write:
- a top-level `rope_theta` / `rope_scaling` (4.x), or `rope_parameters` (5.x), either one dict or one
  dict per layer type (`{"full_attention": {...}, "sliding_attention": {...}}`, Gemma3);
- `text_config` nesting (Gemma3ForConditionalGeneration): the text part is used, the vision part
  ignored;
- fields left out because they equal the model class's default (transformers writes only the
  differences for some fields): the defaults of the matching HF config class fill them in;
- `partial_rotary_factor` at the top level (4.x) or inside the rope dict (5.x); Phi-3's top-level
  `original_max_position_embeddings`, which wins over the rope dict's (as in transformers).
Unknown keys are ignored; the dict as read is kept in `raw`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.errors import VkharpError

# HF config-class defaults for the fields this module reads, by model_type (only where they differ from
# _COMMON). They matter when a config.json omits a field because it equals the class default.
_COMMON = dict(rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=2048, tie_word_embeddings=False,
               attention_bias=False, hidden_act="silu", bos_token_id=None, eos_token_id=None)
_DEFAULTS = {
    "llama": dict(bos_token_id=1, eos_token_id=2),
    "mistral": dict(bos_token_id=1, eos_token_id=2, max_position_embeddings=131072, sliding_window=4096),
    "qwen2": dict(max_position_embeddings=32768),
    "gemma3_text": dict(rope_theta=1_000_000.0, rope_local_base_freq=10_000.0, max_position_embeddings=131072,
                        tie_word_embeddings=True, hidden_act="gelu_pytorch_tanh", query_pre_attn_scalar=256,
                        sliding_window=4096, sliding_window_pattern=6, bos_token_id=2, eos_token_id=1,
                        head_dim=256),
    "gemma2": dict(max_position_embeddings=8192, tie_word_embeddings=True, hidden_act="gelu_pytorch_tanh",
                   query_pre_attn_scalar=256, sliding_window=4096, final_logit_softcapping=30.0,
                   attn_logit_softcapping=50.0, bos_token_id=2, eos_token_id=1, head_dim=256,
                   num_key_value_heads=4),
    "qwen3": dict(max_position_embeddings=32768, head_dim=128, sliding_window=4096, num_key_value_heads=32),
    "phi3": dict(rms_norm_eps=1e-5, max_position_embeddings=4096, original_max_position_embeddings=4096,
                 bos_token_id=1, eos_token_id=32000),
    "smollm3": dict(rope_theta=2_000_000.0, max_position_embeddings=32768, tie_word_embeddings=True,
                    bos_token_id=128000, eos_token_id=128001, num_key_value_heads=4),
}
_NULLABLE = {"sliding_window", "bos_token_id", "eos_token_id", "final_logit_softcapping", "query_pre_attn_scalar",
             "attn_logit_softcapping"}
# Families whose sliding window only applies with use_sliding_window = true (HF drops it otherwise).
_OPT_IN_WINDOW = ("qwen2", "qwen3", "smollm3")
LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclass(frozen=True)
class ModelConfig:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0                 # full-attention layers
    rope_scaling: dict | None = None            # full-attention layers; None = plain RoPE ("rope_type" key)
    rope_local_base_freq: float | None = None   # sliding layers' theta when it differs (Gemma3); no scaling there
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    sliding_window: int | None = None           # positions a sliding layer sees, itself included (HF's meaning)
    layer_types: tuple[str, ...] | None = None  # per layer "sliding_attention" / "full_attention", when given
    query_pre_attn_scalar: float | None = None
    hidden_act: str = "silu"                    # HF's name (hidden_act, or Gemma's hidden_activation)
    final_logit_softcapping: float | None = None  # logits = cap * tanh(logits / cap) (Gemma 2)
    attn_logit_softcapping: float | None = None   # the same on attention scores (Gemma 2)
    partial_rotary_factor: float = 1.0            # the first int(head_dim * f) dims are rotated (Phi-4-mini)
    no_rope_layers: tuple[int, ...] | None = None  # per layer 1 = RoPE, 0 = none (SmolLM3's NoPE layers)
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        e = self.eos_token_id
        return () if e is None else (int(e),) if isinstance(e, int) else tuple(int(x) for x in e)

    @classmethod
    def from_hf(cls, d: dict) -> "ModelConfig":
        if not isinstance(d, dict):
            raise VkharpError(f"a model config must be a JSON object, got {type(d).__name__}")
        d = _unwrap_text_config(d)
        model_type = d.get("model_type")
        if not model_type:
            raise VkharpError("config.json has no model_type; it does not look like a transformers model config")
        defaults = {**_COMMON, **_DEFAULTS.get(model_type, {})}

        def get(key):
            # An explicit null counts for the fields where None means "off" (no sliding window ...).
            if key in d and (d[key] is not None or key in _NULLABLE):
                return d[key]
            return defaults.get(key)

        try:
            hidden = int(d["hidden_size"])
            heads = int(d["num_attention_heads"])
            vocab = int(d["vocab_size"])
            layers = int(d["num_hidden_layers"])
            inter = int(d["intermediate_size"])
        except KeyError as e:
            raise VkharpError(f"config.json ({model_type}) lacks the required field {e.args[0]!r}") from None
        head_dim = d.get("head_dim") or defaults.get("head_dim") or hidden // heads
        rope_theta, rope_scaling, local_theta = _rope(d, get("rope_theta"), get("rope_local_base_freq"))
        rope_scaling = _with_original_ctx(model_type, d, rope_scaling, get)
        layer_types = d.get("layer_types")
        if layer_types is not None:
            layer_types = tuple(layer_types)
            bad = sorted(set(layer_types) - set(LAYER_TYPES))
            if bad or len(layer_types) != layers:
                raise VkharpError(f"config.json layer_types must list {layers} entries among {LAYER_TYPES}, "
                                  f"got {len(layer_types)} with {bad or 'valid names'}")
        else:
            layer_types = _default_layer_types(model_type, d, layers, get)
        window = get("sliding_window")
        if model_type in _OPT_IN_WINDOW and not d.get("use_sliding_window", False):
            window = None
        cfg = cls(
            model_type=model_type, vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
            num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=int(get("num_key_value_heads") or heads), head_dim=int(head_dim),
            rms_norm_eps=float(get("rms_norm_eps")), rope_theta=float(rope_theta), rope_scaling=rope_scaling,
            rope_local_base_freq=None if local_theta is None else float(local_theta),
            max_position_embeddings=int(get("max_position_embeddings")),
            tie_word_embeddings=bool(get("tie_word_embeddings")), attention_bias=bool(get("attention_bias")),
            sliding_window=None if window is None else int(window), layer_types=layer_types,
            query_pre_attn_scalar=get("query_pre_attn_scalar"),
            hidden_act=str(d.get("hidden_activation") or get("hidden_act")),   # Gemma's name wins
            final_logit_softcapping=get("final_logit_softcapping"),
            attn_logit_softcapping=get("attn_logit_softcapping"),
            partial_rotary_factor=float(_partial_rotary(d)),
            no_rope_layers=_no_rope_layers(model_type, d, layers),
            bos_token_id=get("bos_token_id"), eos_token_id=get("eos_token_id"), raw=d)
        cfg._check()
        return cfg

    def _check(self):
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim"):
            if getattr(self, name) <= 0:
                raise VkharpError(f"config.json: {name} must be positive, got {getattr(self, name)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise VkharpError(f"config.json: num_attention_heads ({self.num_attention_heads}) must be a multiple "
                              f"of num_key_value_heads ({self.num_key_value_heads})")
        if self.head_dim % 2:
            raise VkharpError(f"config.json: head_dim must be even for RoPE, got {self.head_dim}")
        if self.no_rope_layers is not None and (len(self.no_rope_layers) != self.num_hidden_layers
                                                or set(self.no_rope_layers) - {0, 1}):
            raise VkharpError(f"config.json: no_rope_layers must list {self.num_hidden_layers} entries of 0 or 1, "
                              f"got {list(self.no_rope_layers)}")


def _unwrap_text_config(d: dict) -> dict:
    """Gemma3ForConditionalGeneration and similar: the language model's config is text_config."""
    text = d.get("text_config")
    if not isinstance(text, dict):
        return d
    out = dict(text)
    out.setdefault("model_type", {"gemma3": "gemma3_text"}.get(d.get("model_type"), d.get("model_type")))
    for key in ("tie_word_embeddings", "bos_token_id", "eos_token_id"):
        if key not in out and key in d:
            out[key] = d[key]
    return out


def _scaling(p: dict | None) -> dict | None:
    """A rope_scaling / rope_parameters dict without rope_theta; None for plain RoPE. Old 'type' → 'rope_type'."""
    if not p:
        return None
    s = {k: v for k, v in p.items() if k != "rope_theta"}
    if "type" in s and "rope_type" not in s:
        s["rope_type"] = s.pop("type")
    return None if s.get("rope_type", "default") == "default" else s


def _rope(d: dict, theta, local_theta):
    """(theta, scaling, local theta) for full-attention and sliding layers from either config form."""
    params = d.get("rope_parameters")
    if isinstance(params, dict) and set(params) & set(LAYER_TYPES):
        full = params.get("full_attention") or {}
        sliding = params.get("sliding_attention") or {}
        theta = full.get("rope_theta", theta)
        if "rope_theta" in sliding:
            local_theta = sliding["rope_theta"]
        return theta, _scaling(full), local_theta
    if isinstance(params, dict):
        return params.get("rope_theta", theta), _scaling(params), local_theta
    return theta, _scaling(d.get("rope_scaling")), local_theta


def _with_original_ctx(model_type: str, d: dict, scaling: dict | None, get) -> dict | None:
    """The rope dict with what transformers adds to it: `original_max_position_embeddings` (Phi-3's
    top-level field wins; else the dict's, else max_position_embeddings), Phi-3's legacy su/yarn names."""
    if scaling is None:
        return None
    s = dict(scaling)
    if model_type == "phi3" and s.get("rope_type") in ("su", "yarn"):
        s["rope_type"] = "longrope"
    if s.get("rope_type") in ("llama3", "yarn", "longrope"):
        if model_type == "phi3":
            s["original_max_position_embeddings"] = int(get("original_max_position_embeddings"))
        else:
            s.setdefault("original_max_position_embeddings", int(get("max_position_embeddings")))
    return s


def _partial_rotary(d: dict) -> float:
    params = d.get("rope_parameters") or d.get("rope_scaling") or {}
    if isinstance(params, dict) and "partial_rotary_factor" in params:
        return params["partial_rotary_factor"]
    return d.get("partial_rotary_factor") or 1.0


def _no_rope_layers(model_type: str, d: dict, layers: int) -> tuple[int, ...] | None:
    """SmolLM3: which layers rotate (1) and which do not (0); HF's default is a NoPE layer every 4th."""
    if d.get("no_rope_layers") is not None:
        return tuple(int(x) for x in d["no_rope_layers"])
    if model_type == "smollm3":
        every = int(d.get("no_rope_layer_interval") or 4)
        return tuple(int((i + 1) % every != 0) for i in range(layers))
    return None


def _default_layer_types(model_type: str, d: dict, layers: int, get) -> tuple[str, ...]:
    """What HF derives when config.json carries no layer_types (transformers 4 configs)."""
    full, sliding = LAYER_TYPES
    if model_type == "gemma3_text":
        pattern = int(d.get("sliding_window_pattern") or d.get("_sliding_window_pattern") or 6)
        return tuple(full if (i + 1) % pattern == 0 else sliding for i in range(layers))
    if model_type == "gemma2":
        return tuple(sliding if (i + 1) % 2 else full for i in range(layers))
    if model_type in ("qwen2", "qwen3"):
        use = d.get("use_sliding_window", False) and get("sliding_window") is not None
        first = int(d.get("max_window_layers", 28 if model_type == "qwen3" else layers))
        return tuple(sliding if use and i >= first else full for i in range(layers))
    if model_type == "smollm3":
        use = d.get("use_sliding_window", False) and d.get("sliding_window") is not None
        rope = _no_rope_layers(model_type, d, layers)
        return tuple(sliding if use and not rope[i] else full for i in range(layers))
    if model_type in ("mistral", "phi3") and get("sliding_window") is not None:
        return tuple(sliding for _ in range(layers))
    return tuple(full for _ in range(layers))
