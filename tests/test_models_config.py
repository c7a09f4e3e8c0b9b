"""models/: ModelConfig.from_hf (transformers 4 and 5 config forms) and the Architecture declarations,
checked against transformers itself (state_dict names/shapes, RoPE frequencies) and gguf-py's name map."""
import math

import numpy as np
import pytest

from engine.errors import VkharpError
from models import ARCHITECTURES, ModelConfig, get_architecture
from models.rope import inv_freq

from checkpoints import hf_config, make_hf_model

ARCHS = ["llama", "mistral", "qwen2", "gemma3", "gemma2", "qwen3", "phi3", "smollm3"]


def split_state(a, cfg, state: dict) -> dict:
    """HF's shapes with fused tensors (Phi-3) replaced by their parts, as the converter splits them."""
    out = dict(state)
    for i in range(cfg.num_hidden_layers):
        for fused, parts in a.fused_splits(cfg).items():
            cols = out.pop(f"model.layers.{i}.{fused}")[1]
            out.update({f"model.layers.{i}.{n}": (r1 - r0, cols) for n, r0, r1 in parts})
    return out


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("tied", [False, True])
def test_tensor_shapes_match_transformers(arch, tied):
    # The declaration must name every parameter transformers creates, with its shape, and nothing else.
    model, hf_cfg = make_hf_model(arch, tie_word_embeddings=tied)
    cfg = ModelConfig.from_hf(hf_cfg.to_dict())
    a = get_architecture(cfg.model_type)
    shapes = a.tensor_shapes(cfg)
    state = split_state(a, cfg, {k: tuple(v.shape) for k, v in model.state_dict().items()})
    if tied:
        assert state.pop("lm_head.weight") == shapes["model.embed_tokens.weight"]
    assert shapes == state


def test_odd_heads_shapes():
    model, hf_cfg = make_hf_model("llama", hidden_size=48, num_attention_heads=3, num_key_value_heads=1)
    cfg = ModelConfig.from_hf(hf_cfg.to_dict())
    assert (cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads) == (16, 3, 1)
    shapes = get_architecture("llama").tensor_shapes(cfg)
    assert shapes["model.layers.1.self_attn.k_proj.weight"] == (16, 48)
    assert shapes == {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("arch,gguf_arch", [("llama", "LLAMA"), ("qwen2", "QWEN2"), ("gemma3", "GEMMA3"),
                                            ("gemma2", "GEMMA2"), ("qwen3", "QWEN3"), ("phi3", "PHI3"),
                                            ("smollm3", "SMOLLM3")])
def test_gguf_names_match_gguf_py(arch, gguf_arch):
    # gguf-py's TensorNameMap is llama.cpp's own HF → GGUF naming: ours must agree for every tensor
    # (Phi-3's GGUFs hold the fused tensors, as its HF checkpoints do; llama.cpp's gemma2 is always tied).
    import gguf
    tied = arch == "gemma2"
    model, hf_cfg = make_hf_model(arch, tie_word_embeddings=tied)
    cfg = ModelConfig.from_hf(hf_cfg.to_dict())
    a = get_architecture(cfg.model_type)
    names = a.gguf_names(cfg)
    assert sorted(names.values()) == sorted(n for n in model.state_dict() if not (tied and n == "lm_head.weight"))
    assert split_state(a, cfg, {n: (0, 1) for n in names.values()}).keys() == a.tensor_shapes(cfg).keys()
    tmap = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, gguf_arch), cfg.num_hidden_layers)
    for g, h in names.items():
        base, suffix = h.rsplit(".", 1)
        assert f"{tmap.get_name(base)}.{suffix}" == g, h


def test_llama3_rope_parameters_transformers5():
    d = hf_config("llama", 300, rope_parameters={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
                                                  "rope_theta": 500000.0},
                  max_position_embeddings=131072).to_dict()
    cfg = ModelConfig.from_hf(d)
    assert cfg.rope_theta == 500000.0
    assert cfg.rope_scaling["rope_type"] == "llama3" and cfg.rope_scaling["factor"] == 32.0
    assert "rope_theta" not in cfg.rope_scaling


def test_legacy_transformers4_forms():
    # Top-level rope_theta, rope_scaling with "type", no head_dim, no layer_types, hidden_act.
    cfg = ModelConfig.from_hf({"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
                               "num_hidden_layers": 2, "num_attention_heads": 4, "rope_theta": 1e5,
                               "rope_scaling": {"type": "linear", "factor": 2.0}, "some_unknown_key": 1})
    assert cfg.num_key_value_heads == 4 and cfg.head_dim == 16 and cfg.rope_theta == 1e5
    assert cfg.rope_scaling == {"rope_type": "linear", "factor": 2.0}
    assert cfg.layer_types == ("full_attention",) * 2 and cfg.tie_word_embeddings is False
    assert cfg.hidden_act == "silu" and cfg.rms_norm_eps == 1e-6        # LlamaConfig defaults fill the gaps
    g = ModelConfig.from_hf({"model_type": "gemma3_text", "vocab_size": 100, "hidden_size": 64,
                             "intermediate_size": 96, "num_hidden_layers": 12, "num_attention_heads": 2,
                             "num_key_value_heads": 1, "head_dim": 32, "rope_theta": 1e6,
                             "rope_local_base_freq": 1e4, "sliding_window": 512, "sliding_window_pattern": 6,
                             "hidden_activation": "gelu_pytorch_tanh"})
    a = get_architecture(g.model_type)
    assert [a.layer_window(g, i) for i in range(12)] == [512] * 5 + [0] + [512] * 5 + [0]
    assert [a.layer_rope_theta(g, i) for i in (0, 5)] == [1e4, 1e6]
    assert g.tie_word_embeddings is True and g.bos_token_id == 2   # Gemma3TextConfig defaults


def test_gemma3_transformers5_and_text_config():
    inner = hf_config("gemma3", 300, rope_parameters={
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}).to_dict()
    outer = {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"], "text_config": inner,
             "vision_config": {"hidden_size": 8}, "eos_token_id": [1, 106]}
    inner.pop("eos_token_id")
    cfg = ModelConfig.from_hf(outer)
    a = get_architecture(cfg.model_type)
    assert a.name == "gemma3" and cfg.eos_token_ids == (1, 106)
    assert [a.layer_window(cfg, i) for i in range(3)] == [8, 8, 0]
    assert a.layer_rope_theta(cfg, 0) == 1e4 and a.layer_rope_scaling(cfg, 0) is None
    assert a.layer_rope_theta(cfg, 2) == 1e6 and a.layer_rope_scaling(cfg, 2)["factor"] == 8.0
    assert a.embed_scale(cfg) == math.sqrt(64) and a.attn_scale(cfg) == 32 ** -0.5
    assert a.activation == "gelu_tanh" and a.qk_norm and a.sandwich_norms and a.norm_offset == 1.0


def test_windows_per_architecture():
    llama = ModelConfig.from_hf(hf_config("llama", 300).to_dict())
    mistral = ModelConfig.from_hf(hf_config("mistral", 300).to_dict())
    mistral_off = ModelConfig.from_hf(hf_config("mistral", 300, sliding_window=None).to_dict())
    qwen = ModelConfig.from_hf(hf_config("qwen2", 300).to_dict())
    qwen_legacy = ModelConfig.from_hf({**{k: v for k, v in hf_config("qwen2", 300).to_dict().items()
                                          if k != "layer_types"},
                                       "use_sliding_window": True, "sliding_window": 32, "max_window_layers": 1})
    win = lambda c: [get_architecture(c.model_type).layer_window(c, i) for i in range(c.num_hidden_layers)]
    assert win(llama) == [0, 0]
    assert win(mistral) == [16, 16]
    assert win(mistral_off) == [0, 0]
    assert win(qwen) == [0, 0]
    assert win(qwen_legacy) == [0, 32]
    assert get_architecture("llama").attn_scale(llama) == 16 ** -0.5
    assert get_architecture("llama").embed_scale(llama) == 1.0
    assert get_architecture("qwen2").qkv_bias and not get_architecture("llama").qkv_bias


@pytest.mark.parametrize("scaling", [None,
                                     {"rope_type": "linear", "factor": 4.0},
                                     {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64}])
def test_inv_freq_matches_transformers(scaling):
    # max_position_embeddings 512 > 64 so that llama3's three frequency bands all occur at head_dim 64.
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    params = {"rope_type": "default", "rope_theta": 5000.0, **(scaling or {})}
    c = LlamaConfig(hidden_size=256, num_attention_heads=4, max_position_embeddings=512, rope_parameters=params)
    if params["rope_type"] == "default":
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
        want, _ = LlamaRotaryEmbedding.compute_default_rope_parameters(c)
    else:
        want, _ = ROPE_INIT_FUNCTIONS[params["rope_type"]](c, "cpu")
    got = inv_freq(64, 5000.0, scaling)
    assert got.dtype == np.float32 and got.shape == (32,)
    # torch's f32 pow and ours (f64, rounded) differ by one ulp on a few of ~900 frequencies tried.
    np.testing.assert_array_max_ulp(got, want.numpy(), maxulp=1)
    if scaling:
        assert not np.allclose(got, inv_freq(64, 5000.0))


def _longrope_config(**kw):
    from transformers import Phi3Config
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": list(np.linspace(1, 3, 32)),
            "long_factor": list(np.linspace(1, 40, 32)), **kw.pop("rope", {})}
    return Phi3Config(hidden_size=256, num_attention_heads=4, max_position_embeddings=131072,
                      original_max_position_embeddings=4096, rope_parameters=rope, **kw)


@pytest.mark.parametrize("partial", [1.0, 0.75])
@pytest.mark.parametrize("seq", [100, 4096, 4097])
def test_longrope_matches_transformers(partial, seq):
    # transformers picks the factor set from the sequence it is given; we from the loaded context:
    # the same numbers for ctx = seq. The attention factor is transformers' (sqrt(1 + ln 32 / ln 4096)).
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    c = _longrope_config(rope={"partial_rotary_factor": partial, "short_factor": list(np.linspace(1, 3, int(32 * partial))),
                               "long_factor": list(np.linspace(1, 40, int(32 * partial)))})
    want, want_af = ROPE_INIT_FUNCTIONS["longrope"](c, "cpu", seq_len=seq)
    cfg = ModelConfig.from_hf(c.to_dict())
    a = get_architecture("phi3")
    a.validate(cfg)
    got = a.layer_inv_freq(cfg, 0, ctx=seq)
    assert got.shape == (int(64 * partial) // 2,)
    np.testing.assert_array_max_ulp(got, want.numpy(), maxulp=1)
    assert math.isclose(a.rope_q_scale(cfg, 0), want_af ** 2, rel_tol=1e-12)
    assert a.attn_scale(cfg) == 64 ** -0.5                         # the factor is not also in the scale


def test_phi3_transformers4_config():
    # Phi-3-mini-128k's config.json (transformers 4): rope_scaling with "type", the original context at
    # the top level, a sliding window for every layer; "su" is longrope's old name.
    d = {"model_type": "phi3", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
         "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 131072,
         "original_max_position_embeddings": 4096, "sliding_window": 262144, "partial_rotary_factor": 0.75,
         "rope_scaling": {"type": "su", "short_factor": [1.0] * 6, "long_factor": [2.0] * 6}}
    cfg = ModelConfig.from_hf(d)
    a = get_architecture("phi3")
    a.validate(cfg)
    assert cfg.rope_scaling["rope_type"] == "longrope" and cfg.rope_scaling["original_max_position_embeddings"] == 4096
    assert cfg.partial_rotary_factor == 0.75 and cfg.rms_norm_eps == 1e-5 and cfg.eos_token_id == 32000
    assert [a.layer_window(cfg, i) for i in range(2)] == [262144, 262144]
    np.testing.assert_array_equal(a.layer_inv_freq(cfg, 0, ctx=4096) * 2, a.layer_inv_freq(cfg, 0, ctx=8192) * 4)
    assert a.fused_splits(cfg)["mlp.gate_up_proj.weight"][1] == ("mlp.up_proj.weight", 96, 192)


def test_newer_families_defaults_and_layers():
    q3 = ModelConfig.from_hf({"model_type": "qwen3", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
                              "num_hidden_layers": 2, "num_attention_heads": 32, "sliding_window": None})
    assert q3.head_dim == 128 and q3.num_key_value_heads == 32 and q3.layer_types == ("full_attention",) * 2
    assert get_architecture("qwen3").qk_norm and not get_architecture("qwen3").qkv_bias
    g2 = ModelConfig.from_hf({"model_type": "gemma2", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
                              "num_hidden_layers": 4, "num_attention_heads": 8})
    a = get_architecture("gemma2")
    assert [a.layer_window(g2, i) for i in range(4)] == [4096, 0, 4096, 0]           # Gemma2Config defaults
    assert (a.attn_softcap(g2), a.final_softcap(g2), g2.head_dim, a.attn_scale(g2)) == (50.0, 30.0, 256, 256 ** -0.5)
    assert a.sandwich_norms and a.norm_offset == 1.0 and not a.qk_norm and g2.num_key_value_heads == 4
    s3 = ModelConfig.from_hf({"model_type": "smollm3", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
                              "num_hidden_layers": 8, "num_attention_heads": 4})
    a = get_architecture("smollm3")
    assert s3.no_rope_layers == (1, 1, 1, 0, 1, 1, 1, 0) and s3.rope_theta == 2e6 and s3.tie_word_embeddings
    assert not a.layer_inv_freq(s3, 3).any() and a.layer_inv_freq(s3, 2).all()
    slid = ModelConfig.from_hf({**s3.raw, "use_sliding_window": True, "sliding_window": 16})
    assert [a.layer_window(slid, i) for i in range(4)] == [0, 0, 0, 16]     # HF: NoPE layers slide
    with pytest.raises(VkharpError, match="no_rope_layers must list 8"):
        ModelConfig.from_hf({**s3.raw, "no_rope_layers": [1, 0]})


def test_unknown_architecture_names_supported_ones():
    with pytest.raises(VkharpError, match="unsupported model_type 'gpt2'.*gemma3.*llama.*mistral.*qwen2"):
        get_architecture("gpt2")
    assert set(ARCHITECTURES) >= {"llama", "mistral", "qwen2", "gemma3_text"}


def test_bad_configs():
    base = hf_config("llama", 300).to_dict()
    with pytest.raises(VkharpError, match="hidden_size"):
        ModelConfig.from_hf({k: v for k, v in base.items() if k != "hidden_size"})
    with pytest.raises(VkharpError, match="model_type"):
        ModelConfig.from_hf({k: v for k, v in base.items() if k != "model_type"})
    with pytest.raises(VkharpError, match="multiple of num_key_value_heads"):
        ModelConfig.from_hf({**base, "num_key_value_heads": 3})
    with pytest.raises(VkharpError, match="activation 'gelu'"):
        get_architecture("llama").validate(ModelConfig.from_hf({**base, "hidden_act": "gelu"}))
    yarn = {**base, "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}}
    with pytest.raises(VkharpError, match="RoPE scaling 'yarn'"):
        get_architecture("llama").validate(ModelConfig.from_hf(yarn))
    with pytest.raises(VkharpError, match="mlp_bias"):
        get_architecture("llama").validate(ModelConfig.from_hf({**base, "mlp_bias": True}))
    with pytest.raises(VkharpError, match="layer_types"):
        ModelConfig.from_hf({**base, "layer_types": ["full_attention"]})
    with pytest.raises(VkharpError, match="partial_rotary_factor 0.5 is not supported"):
        get_architecture("llama").validate(ModelConfig.from_hf({**base, "partial_rotary_factor": 0.5}))
    with pytest.raises(VkharpError, match="longrope.*short_factor has 3 entries"):
        d = _longrope_config().to_dict()
        d["rope_parameters"]["short_factor"] = [1.0] * 3
        get_architecture("phi3").layer_inv_freq(ModelConfig.from_hf(d), 0, ctx=10)
    with pytest.raises(VkharpError, match="attention_bias=true"):
        get_architecture("qwen3").validate(ModelConfig.from_hf({**hf_config("qwen3", 300).to_dict(),
                                                                 "attention_bias": True}))
