"""Tiny random-init Hugging Face checkpoints (transformers, CPU, no hub) for converter and runtime tests.

    make_hf_checkpoint(tmpdir, "llama", tie_word_embeddings=True, dtype="bf16", max_shard_size="40KB")

Every parameter is drawn at random (norms included, so a converter that forgets Gemma's 1 + w shows),
saved with save_pretrained (safetensors), next to a small byte-level BPE tokenizer.json trained here,
a tokenizer_config.json carrying a chat template, and generation_config.json.
"""
from __future__ import annotations

import json
from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "A quick brown fox jumps over the lazy dog, again and again.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000; symbols: + - * / = ( ) [ ] { }.",
    "Language models predict the next token from the previous ones.",
]
VOCAB = 300

# Small shapes: hidden 48-96, 2-3 layers, matrices' columns multiples of 32 unless a test wants otherwise.
BASE = {
    "llama": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, tie_word_embeddings=False, rms_norm_eps=1e-5, rope_theta=10000.0),
    "mistral": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, sliding_window=16, tie_word_embeddings=False),
    "qwen2": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1_000_000.0),
    "gemma3": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=2,
                   num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32, sliding_window=8,
                   layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                   tie_word_embeddings=True, max_position_embeddings=256),
    "gemma2": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=2,
                   num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32, sliding_window=8,
                   tie_word_embeddings=True, max_position_embeddings=256),
    "qwen3": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, tie_word_embeddings=False, rope_theta=1_000_000.0),
    "phi3": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=False),
    "smollm3": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                    num_key_value_heads=2, no_rope_layer_interval=2, tie_word_embeddings=True),
}


def make_tokenizer():
    """A byte-level BPE trained on CORPUS (VOCAB entries), with the SPECIAL tokens first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def hf_config(arch: str, vocab_size: int, **overrides):
    from transformers import (Gemma2Config, Gemma3TextConfig, LlamaConfig, MistralConfig, Phi3Config, Qwen2Config,
                              Qwen3Config, SmolLM3Config)
    cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config, "gemma3": Gemma3TextConfig,
           "gemma2": Gemma2Config, "qwen3": Qwen3Config, "phi3": Phi3Config, "smollm3": SmolLM3Config}[arch]
    kw = {**BASE[arch], "vocab_size": vocab_size, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, **overrides}
    return cls(**kw)


def make_hf_model(arch: str, seed: int = 0, **overrides):
    """A random-init causal LM (float32) for `arch`; returns (model, config)."""
    import torch
    from transformers import AutoModelForCausalLM
    tok_vocab = VOCAB
    cfg = hf_config(arch, tok_vocab, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).float().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 1 else 0.05))
    return model, cfg


def make_hf_checkpoint(tmpdir, arch: str, *, dtype: str = "f32", max_shard_size: str | None = None,
                       seed: int = 0, **overrides) -> Path:
    """Write a tiny checkpoint of `arch` (llama, mistral, qwen2, gemma3, gemma2, qwen3, phi3, smollm3) into tmpdir/arch; returns the path.

    dtype: f32 | f16 | bf16 (the safetensors dtype); max_shard_size: e.g. "40KB" to force sharding;
    overrides: HF config fields (tie_word_embeddings=..., num_attention_heads=3, ...).
    """
    import torch
    out = Path(tmpdir) / f"{arch}-{dtype}-{seed}{'-sharded' if max_shard_size else ''}"
    model, _ = make_hf_model(arch, seed, **overrides)
    model = model.to({"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype])
    kw = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(out, **kw)
    tok = make_tokenizer()
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": SPECIAL[1], "eos_token": SPECIAL[2],
        "pad_token": SPECIAL[0], "chat_template": CHAT_TEMPLATE}, indent=1))
    return out


def hf_state(path: Path) -> dict:
    """{name: float32 ndarray} of every tensor in a checkpoint directory's safetensors files."""
    from safetensors import safe_open
    out = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as h:
            for k in h.keys():
                out[k] = h.get_tensor(k).float().numpy()
    return out


def llama_cpp_permute(w, n_head: int, n_head_kv: int | None = None):
    """convert_hf_to_gguf.py's `permute` (a copy, so tests do not check the converter against itself)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def write_gguf(path: Path, arch: str, model, cfg, types: dict | None = None, tokenizer_dir: Path | None = None,
               gguf_arch_name: str | None = None, raw_blocks: dict | None = None) -> dict:
    """Write `model` (a make_hf_model result) as llama.cpp would: names from gguf-py's TensorNameMap, Q/K
    permuted for llama, Gemma norms stored as 1 + w, tensors in `types` ({hf_name: GGMLQuantizationType},
    default F32) quantized with gguf-py; `raw_blocks` {hf_name: (uint8 blocks, type)} replaces a tensor's
    data (e.g. random Q4_K blocks). Returns {hf_name: raw array written} for the tests to compare."""
    import gguf
    import numpy as np
    from gguf.quants import quantize as gguf_quantize
    T = gguf.GGMLQuantizationType
    types = types or {}
    garch = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "gemma3": "gemma3", "gemma2": "gemma2",
             "qwen3": "qwen3", "phi3": "phi3", "smollm3": "smollm3"}[arch]
    w = gguf.GGUFWriter(str(path), gguf_arch_name or garch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    if garch == "gemma3":
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_sliding_window(cfg.sliding_window)
        w.add_sliding_window_pattern([t == "sliding_attention" for t in cfg.layer_types])
        w.add_rope_freq_base(cfg.rope_parameters["full_attention"]["rope_theta"])
        w.add_rope_freq_base_swa(cfg.rope_parameters["sliding_attention"]["rope_theta"])
    else:
        rope = cfg.rope_parameters
        w.add_rope_dimension_count(int(head_dim * rope.get("partial_rotary_factor", 1.0)))
        w.add_rope_freq_base(rope["rope_theta"])
    if garch in ("gemma2", "qwen3"):
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if garch == "gemma2":
        w.add_sliding_window(cfg.sliding_window)
        w.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
        w.add_final_logit_softcapping(cfg.final_logit_softcapping)
    if garch == "phi3":   # convert_hf_to_gguf.py's Phi3MiniModel: factors as tensors, the rest as metadata
        import math
        rope, orig = cfg.rope_parameters, cfg.original_max_position_embeddings
        w.add_rope_scaling_orig_ctx_len(orig)
        w.add_sliding_window(cfg.sliding_window or 0)
        if rope.get("rope_type") == "longrope":
            scale = cfg.max_position_embeddings / orig
            w.add_rope_scaling_attn_factors(1.0 if scale <= 1.0 else math.sqrt(1 + math.log(scale) / math.log(orig)))
            w.add_tensor("rope_factors_long.weight", np.asarray(rope["long_factor"], dtype=np.float32))
            w.add_tensor("rope_factors_short.weight", np.asarray(rope["short_factor"], dtype=np.float32))
    if tokenizer_dir is not None:
        _add_gpt2_tokenizer(w, tokenizer_dir)
    tmap = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, garch.upper()), cfg.num_hidden_layers)
    written = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        a = t.float().numpy()
        base, suffix = name.rsplit(".", 1)
        gname = f"{tmap.get_name(base)}.{suffix}"
        if garch in ("llama", "smollm3") and name.endswith("q_proj.weight"):
            a = llama_cpp_permute(a, cfg.num_attention_heads)
        if garch in ("llama", "smollm3") and name.endswith("k_proj.weight"):
            a = llama_cpp_permute(a, cfg.num_attention_heads, cfg.num_key_value_heads)
        if garch in ("gemma3", "gemma2") and name.endswith("norm.weight"):
            a = a + np.float32(1.0)
        qt = types.get(name, T.F32)
        if raw_blocks and name in raw_blocks:
            raw, qt = raw_blocks[name]
            w.add_tensor(gname, raw, raw_shape=raw.shape, raw_dtype=qt)
        elif qt == T.F32:
            raw = np.ascontiguousarray(a, dtype=np.float32)
            w.add_tensor(gname, raw)
        elif qt == T.F16:
            raw = a.astype(np.float16)
            w.add_tensor(gname, raw)
        else:
            raw = gguf_quantize(a, qt)
            w.add_tensor(gname, raw, raw_shape=raw.shape, raw_dtype=qt)
        written[name] = raw
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return written


def _add_gpt2_tokenizer(w, tokenizer_dir: Path):
    """The tokenizer.json of make_tokenizer() as llama.cpp stores a gpt2-style BPE."""
    tj = json.loads((Path(tokenizer_dir) / "tokenizer.json").read_text())
    vocab = sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])
    specials = {t["content"] for t in tj["added_tokens"]}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([3 if t in specials else 1 for t, _ in vocab])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
