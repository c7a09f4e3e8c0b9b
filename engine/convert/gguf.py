"""GGUF files (llama.cpp): tensors repacked or dequantized, config.json and tokenizer rebuilt from metadata.

- F32/F16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K/IQ4_NL/IQ4_XS/Q2_K/Q3_K are repacked losslessly
  (quant.from_gguf_blocks) when kept, so a mixed file (Q4_K_M, Q2_K, Q3_K_M: a type per layer and per matrix) keeps
  its size on the device; BF16 becomes f16 (exact for |w| in f16's normal range; the error is measured); other
  types gguf can decode (IQ2_XS, IQ3_S, TQ2_0, ...) are dequantized with gguf.quants.dequantize and stored as f16 unless
  a dtype is asked for, with the error of that step measured per tensor (‖stored − GGUF-decoded‖ /
  ‖GGUF-decoded‖). A type gguf cannot decode, a tensor that is not whole blocks (256-column
  super-blocks for the k-quants) or whose data is shorter or longer than its shape needs are refused
  when the file is opened, before anything is written.
- llama.cpp permutes the rows of Q and K for `llama` and `smollm3` files (its RoPE rotates interleaved
  pairs); the permutation is undone here, so the runtime uses HF's half-split RoPE for every architecture.
- Phi-3's fused attn_qkv and ffn_up (gate and up) are split into row slices of the stored blocks, so a
  kept type stays lossless; longrope's factor tensors go back into config.json's rope_scaling.
- Gemma files already hold norm weights as 1 + w (llama.cpp adds the 1 at conversion): kept as stored.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import VkharpError
from ..quant import FORMATS, from_gguf_blocks
from .source import Converted, Source, SourceTensor, pack_rows, resolve, split_fused

NATIVE = ("f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs",
          "q2_k", "q3_k")   # kept as they are
SKIPPED = {"rope_freqs.weight": "llama3 RoPE factors, rebuilt into config.json rope_scaling",
           "rope_factors_long.weight": "longrope long factors, rebuilt into config.json rope_scaling",
           "rope_factors_short.weight": "longrope short factors, rebuilt into config.json rope_scaling"}

_HF_CLASS = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
             "gemma3_text": "Gemma3ForCausalLM", "qwen3": "Qwen3ForCausalLM", "phi3": "Phi3ForCausalLM",
             "gemma2": "Gemma2ForCausalLM", "smollm3": "SmolLM3ForCausalLM"}
GGUF_ARCHS = ("gemma2", "gemma3", "llama", "phi3", "qwen2", "qwen3", "smollm3")


def field_value(field):
    """A GGUF metadata value as Python (str, int, float, bool, or a list of those)."""
    from gguf import GGUFValueType as V
    if hasattr(field, "contents"):
        return field.contents()
    def scalar(part, vtype):
        if vtype == V.STRING:
            return bytes(part).decode("utf-8", errors="replace")
        v = part[0]
        return bool(v) if vtype == V.BOOL else v.item()
    if field.types[0] == V.ARRAY:
        return [scalar(field.parts[i], field.types[-1]) for i in field.data]
    return scalar(field.parts[field.data[0]], field.types[0])


def unpermute_rows(a: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's `permute` of Q/K rows: within each head, rows (2j, 2j+1) go back to (j, j + hd/2)."""
    rows = a.shape[0]
    return np.ascontiguousarray(a.reshape(n_head, rows // n_head // 2, 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape))


def permute_rows(a: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's permutation (convert_hf_to_gguf.py `permute`), for tests and GGUF writers."""
    rows = a.shape[0]
    return np.ascontiguousarray(a.reshape(n_head, 2, rows // n_head // 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape))


class GGUFSource(Source):
    kind = "gguf"

    def __init__(self, path: Path):
        from gguf import GGUFReader
        self.path = Path(path)
        try:
            self.reader = GGUFReader(str(self.path))
        except Exception as e:  # the reader raises ValueError/struct errors/IndexError on damaged files
            raise VkharpError(f"{self.path} could not be read as GGUF ({type(e).__name__}: {e}); "
                              f"download it again") from None
        self.meta = {k: field_value(f) for k, f in self.reader.fields.items()
                     if not k.startswith("tokenizer.ggml.") or k in _SMALL_TOKENIZER_KEYS}
        if int(self.meta.get("split.count", 1)) > 1:
            raise VkharpError(f"{self.path} is one part of a split GGUF ({self.meta['split.count']} parts); merge "
                              f"them first: llama-gguf-split --merge {self.path.name} merged.gguf")
        self.gguf_arch = self.meta.get("general.architecture")
        by_name = {t.name: t for t in self.reader.tensors}
        self.config = hf_config(self.meta, by_name)
        from models import ModelConfig, get_architecture
        self.cfg = ModelConfig.from_hf(self.config)
        self.arch = get_architecture(self.cfg.model_type)
        names = self.arch.gguf_names(self.cfg)
        self.tensors, self.skipped, self.unmapped = {}, [], []
        for gname, t in by_name.items():
            if gname in SKIPPED:
                self.skipped.append(f"{gname} ({SKIPPED[gname]})")
            elif gname not in names:
                self.unmapped.append(gname)
            else:
                name = names[gname]
                shape = tuple(int(x) for x in reversed(t.shape.tolist()))
                check_tensor_data(gname, t, shape)
                self.tensors[name] = SourceTensor(name, shape, t.tensor_type.name.lower(), t)
        split_fused(self.tensors, self.arch.fused_splits(self.cfg), self.cfg.num_hidden_layers)
        self._permuted = {}
        if self.arch.gguf_qk_permuted:          # llama, mistral (gguf "llama") and smollm3 files
            for i in range(self.cfg.num_hidden_layers):
                for proj, heads in (("q_proj", self.cfg.num_attention_heads), ("k_proj", self.cfg.num_key_value_heads)):
                    for kind in ("weight", "bias"):
                        self._permuted[f"model.layers.{i}.self_attn.{proj}.{kind}"] = heads

    def default_format(self, t: SourceTensor) -> str:
        return t.source_format if t.source_format in NATIVE else "f16"

    def read(self, t: SourceTensor, fmt: str) -> Converted:
        stored, rows = resolve(t)
        gt = stored.ref
        raw = np.asarray(gt.data)
        if rows is not None:     # a part of a fused tensor: whole rows of blocks, kept as they are
            raw = raw[rows]
        if t.name in self._permuted:
            raw = unpermute_rows(raw, self._permuted[t.name])
        if len(t.shape) == 1:
            return Converted(_dequantize(t, raw).reshape(t.shape))
        rows, cols = t.shape
        if fmt == t.source_format and fmt in FORMATS:
            return Converted(from_gguf_blocks(raw, fmt, rows, cols))
        return pack_rows(t.name, t.shape, fmt, lambda r0, r1: _dequantize(t, raw[r0:r1]).reshape(r1 - r0, cols),
                         exact_source=False)

    def side_files(self) -> dict[str, bytes]:
        import json
        from .tokenizer_gguf import build_tokenizer_files
        files = build_tokenizer_files(self.reader, self.meta, self.config)
        files["config.json"] = (json.dumps(self.config, indent=2) + "\n").encode()
        return files

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.path.resolve()), "bytes": os.path.getsize(self.path),
                "name": self.meta.get("general.name"), "file_type": self.meta.get("general.file_type")}


_DECODABLE: dict = {}


def _decodable(qtype) -> bool:
    """Whether the installed gguf package decodes this type (tried on one zero block, once per type)."""
    if qtype not in _DECODABLE:
        from gguf import GGML_QUANT_SIZES
        from gguf.quants import dequantize
        try:
            bc, bb = GGML_QUANT_SIZES[qtype]
            dequantize(np.zeros((1, bb), np.uint8), qtype)
            _DECODABLE[qtype] = True
        except (NotImplementedError, KeyError, ValueError):
            _DECODABLE[qtype] = False
    return _DECODABLE[qtype]


def supported_types_line() -> str:
    from gguf import GGMLQuantizationType as T
    decoded = [q.name for q in T if q.name.lower() not in NATIVE and q.name != "BF16" and _decodable(q)]
    return (f"kept as they are: {', '.join(n.upper() for n in NATIVE)}; BF16 stored as f16; "
            f"decoded to f16: {', '.join(decoded)}")


def check_tensor_data(gname: str, t, shape: tuple[int, ...]) -> None:
    """Refuse, before anything is written, a tensor whose type we cannot read, that is not whole
    blocks, or whose data does not match its shape (a truncated super-block, a cut file)."""
    from gguf import GGML_QUANT_SIZES
    qtype = t.tensor_type
    name = qtype.name
    if name.lower() not in NATIVE and name != "BF16" and not _decodable(qtype):
        raise VkharpError(f"GGUF tensor {gname} has type {name}, which vkharp does not support "
                          f"({supported_types_line()})")
    bc, bb = GGML_QUANT_SIZES[qtype]
    cols = shape[-1] if shape else 1
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if cols % bc:
        raise VkharpError(f"GGUF tensor {gname} ({name}, shape {list(shape)}): {cols} columns are not whole "
                          f"{bc}-weight blocks of {name}; the file is damaged")
    want = n // bc * bb
    got = int(np.asarray(t.data).nbytes)
    if got != want or int(t.n_bytes) != want:
        raise VkharpError(f"GGUF tensor {gname} ({name}, shape {list(shape)}) holds {min(got, int(t.n_bytes))} "
                          f"bytes of data, its shape needs {want} ({n // bc} blocks of {bb}): a truncated block "
                          f"or a scale table that does not match the shape; download the file again")


def _dequantize(t: SourceTensor, raw: np.ndarray) -> np.ndarray:
    from gguf.quants import dequantize
    gt = resolve(t)[0].ref
    try:
        return dequantize(raw, gt.tensor_type).astype(np.float32, copy=False)
    except NotImplementedError:
        raise VkharpError(f"{t.name}: GGUF type {gt.tensor_type.name} cannot be decoded by the installed gguf "
                          f"package; upgrade it (pip install -U gguf) or use a file with another quantization") from None


_SMALL_TOKENIZER_KEYS = {
    "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
    "tokenizer.ggml.add_space_prefix"}


def _f(x):
    """A float32 metadata value as the decimal it was written from (9.99999974e-06 → 1e-05)."""
    return float(f"{float(x):.7g}")


def hf_config(meta: dict, tensors: dict) -> dict:
    """An HF config.json dict for the model a GGUF file describes."""
    arch = meta.get("general.architecture")
    if arch not in GGUF_ARCHS:
        raise VkharpError(f"GGUF architecture {arch!r} is not supported; supported: {', '.join(GGUF_ARCHS)}")

    def a(key, default=None):
        return meta.get(f"{arch}.{key}", default)

    n_head = a("attention.head_count")
    if isinstance(n_head, list) or isinstance(a("attention.head_count_kv"), list):
        raise VkharpError("GGUF files with per-layer head counts are not supported")
    hidden = int(a("embedding_length"))
    head_dim = int(a("attention.key_length") or hidden // n_head)
    rot = a("rope.dimension_count")
    if rot is not None and int(rot) != head_dim and arch != "phi3":
        raise VkharpError(f"partial rotary embeddings (rope.dimension_count {rot} < head_dim {head_dim}) "
                          f"are supported for phi3 GGUF files only, not {arch}")
    if "token_embd.weight" not in tensors:
        raise VkharpError("the GGUF file has no token_embd.weight tensor")
    vocab = int(tensors["token_embd.weight"].shape[-1])
    layers = int(a("block_count"))
    cfg = {
        "model_type": arch, "vocab_size": vocab, "hidden_size": hidden,
        "intermediate_size": int(a("feed_forward_length")), "num_hidden_layers": layers,
        "num_attention_heads": int(n_head), "num_key_value_heads": int(a("attention.head_count_kv", n_head)),
        "head_dim": head_dim, "rms_norm_eps": _f(a("attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_theta": _f(a("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(a("context_length", 2048)),
        "tie_word_embeddings": "output.weight" not in tensors,
        "hidden_act": "silu",
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": meta.get("tokenizer.ggml.eos_token_id"),
    }
    if rot is not None and int(rot) != head_dim:
        cfg["partial_rotary_factor"] = int(rot) / head_dim          # Phi-4-mini: 96 of 128
    scaling = _rope_scaling(meta, arch, tensors, head_dim, cfg["rope_theta"])
    if scaling:
        cfg["rope_scaling"] = scaling
    if arch == "phi3":
        if scaling and scaling["rope_type"] == "longrope":
            cfg["original_max_position_embeddings"] = scaling["original_max_position_embeddings"]
        if a("attention.sliding_window"):
            cfg["sliding_window"] = int(a("attention.sliding_window"))
    if arch == "smollm3":
        cfg["no_rope_layer_interval"] = 4     # llama.cpp hard-codes it (n_no_rope_layer_step); no metadata
    if arch == "llama" and a("attention.sliding_window"):
        cfg.update(model_type="mistral", sliding_window=int(a("attention.sliding_window")))
    if arch in ("qwen2", "qwen3"):
        cfg["use_sliding_window"] = False
    if arch == "gemma2":
        del cfg["hidden_act"]
        cfg.update(hidden_activation="gelu_pytorch_tanh",
                   # llama.cpp: 27B (46 layers) scales by hidden/heads, the others by head_dim
                   query_pre_attn_scalar=hidden // int(n_head) if layers == 46 else head_dim,
                   sliding_window=int(a("attention.sliding_window", 4096)),
                   layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)],
                   attn_logit_softcapping=a("attn_logit_softcapping"),
                   final_logit_softcapping=a("final_logit_softcapping"))
    if arch == "gemma3":
        del cfg["hidden_act"]
        pattern = a("attention.sliding_window_pattern", 6)   # llama.cpp's gemma3 default: every 6th layer global
        if isinstance(pattern, list):   # one bool per layer, true = sliding
            if len(pattern) != layers:
                raise VkharpError(f"sliding_window_pattern lists {len(pattern)} layers, the model has {layers}")
            types = ["sliding_attention" if p else "full_attention" for p in pattern]
        else:
            types = ["full_attention" if (i + 1) % int(pattern) == 0 else "sliding_attention" for i in range(layers)]
        cfg.update(model_type="gemma3_text", hidden_activation="gelu_pytorch_tanh",
                   # llama.cpp: 27B scales by hidden/heads, the others by head_dim
                   query_pre_attn_scalar=hidden // int(n_head) if layers == 62 else head_dim,
                   sliding_window=int(a("attention.sliding_window", 4096)), layer_types=types,
                   rope_local_base_freq=_f(a("rope.freq_base_swa", 10000.0)),
                   final_logit_softcapping=a("final_logit_softcapping"))
    cfg["architectures"] = [_HF_CLASS[cfg["model_type"]]]
    return cfg


def _rope_scaling(meta: dict, arch: str, tensors: dict, head_dim: int, theta: float) -> dict | None:
    if "rope_factors_long.weight" in tensors or "rope_factors_short.weight" in tensors:
        return _longrope(meta, arch, tensors)
    kind = meta.get(f"{arch}.rope.scaling.type")
    if kind and kind != "none":
        out = {"rope_type": kind, "factor": _f(meta.get(f"{arch}.rope.scaling.factor", 1.0))}
        orig = meta.get(f"{arch}.rope.scaling.original_context_length")
        if orig:
            out["original_max_position_embeddings"] = int(orig)
        return out
    if "rope_freqs.weight" in tensors:
        return _llama3_from_factors(np.asarray(tensors["rope_freqs.weight"].data, dtype=np.float32), head_dim, theta)
    return None


def _longrope(meta: dict, arch: str, tensors: dict) -> dict:
    """Phi-3's longrope: llama.cpp keeps both factor sets as tensors, the original context and the
    attention factor (computed as transformers does) as metadata."""
    missing = [n for n in ("rope_factors_long.weight", "rope_factors_short.weight") if n not in tensors]
    orig = meta.get(f"{arch}.rope.scaling.original_context_length")
    if missing or not orig:
        raise VkharpError(f"this GGUF's longrope scaling is incomplete: "
                          f"{', '.join(missing) or f'{arch}.rope.scaling.original_context_length'} is missing")
    out = {"rope_type": "longrope", "original_max_position_embeddings": int(orig),
           "long_factor": [float(x) for x in np.asarray(tensors["rope_factors_long.weight"].data, np.float32)],
           "short_factor": [float(x) for x in np.asarray(tensors["rope_factors_short.weight"].data, np.float32)]}
    if meta.get(f"{arch}.rope.scaling.attn_factor") is not None:
        out["attention_factor"] = float(meta[f"{arch}.rope.scaling.attn_factor"])
    return out


def _llama3_from_factors(factors: np.ndarray, head_dim: int, theta: float) -> dict:
    """llama.cpp stores Llama 3.1+'s scaling as per-frequency divisors; find the llama3 parameters behind them."""
    from models.rope import inv_freq
    base = inv_freq(head_dim, theta)
    want = base / factors
    for low, high, orig in ((1.0, 4.0, 8192), (1.0, 4.0, 4096), (1.0, 4.0, 16384)):
        s = {"rope_type": "llama3", "factor": _f(factors.max()), "low_freq_factor": low, "high_freq_factor": high,
             "original_max_position_embeddings": orig}
        if np.allclose(inv_freq(head_dim, theta, s), want, rtol=1e-4, atol=0):
            return s
    raise VkharpError("rope_freqs.weight holds RoPE factors that match no llama3 scaling setting; "
                      "this GGUF's RoPE is not supported")


def is_gguf(path: Path) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"

