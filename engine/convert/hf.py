"""Hugging Face checkpoint directories: config.json, *.safetensors (single or sharded), tokenizer files.

Pickle checkpoints (pytorch_model.bin, *.pt) are refused: unpickling runs arbitrary code. Tensor names
are HF's; the multimodal wrappers' prefixes (Gemma3ForConditionalGeneration) are mapped to the causal
LM's, and their vision tensors skipped. Weights are read through memmaps, one tensor at a time.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import VkharpError
from .format import SIDE_FILES
from .safetensors_io import read_header, read_tensor, to_float32
from .source import Converted, Source, SourceTensor, pack_rows, resolve, split_fused

# Buffers some checkpoints carry that the runtime recomputes: skipped by name suffix.
SKIP_SUFFIXES = ("rotary_emb.inv_freq", "self_attn.rotary_emb.cos_cached", "self_attn.rotary_emb.sin_cached")
# Parts of multimodal checkpoints the text runtime does not use: skipped by prefix.
SKIP_PREFIXES = ("vision_tower.", "model.vision_tower.", "multi_modal_projector.", "model.multi_modal_projector.",
                 "vision_model.", "model.vision_model.")
# Wrapper prefixes → the causal LM's names.
RENAMES = (("model.language_model.", "model."), ("language_model.model.", "model."),
           ("language_model.lm_head.", "lm_head."))
PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt", "*.bin")
FLOAT_CODES = {"F32": "f32", "F16": "f16", "BF16": "bf16", "F64": "f64"}


def pickle_refusal(src: Path, found: str) -> VkharpError:
    return VkharpError(
        f"{src}: only a PyTorch pickle checkpoint ({found}) is here; vkharp reads safetensors only, because "
        f"loading a pickle can run arbitrary code. Convert it once with transformers, from a source you trust:\n"
        f"  python -c \"from transformers import AutoModelForCausalLM as M, AutoTokenizer as T; "
        f"M.from_pretrained('{src}').save_pretrained('{src}-st', safe_serialization=True); "
        f"T.from_pretrained('{src}').save_pretrained('{src}-st')\"\n"
        f"then convert {src}-st")


def hf_name(name: str) -> str:
    for old, new in RENAMES:
        if name.startswith(old):
            return new + name[len(old):]
    return name


class HFSource(Source):
    kind = "hf"

    def __init__(self, src: Path, tie_word_embeddings: bool | None = None):
        self.src = Path(src)
        cfg_path = self.src / "config.json"
        if not cfg_path.is_file():
            raise VkharpError(f"{self.src}: no config.json; expected a Hugging Face model directory or a .gguf file")
        try:
            self.config_bytes = cfg_path.read_bytes()
            self.config = json.loads(self.config_bytes)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise VkharpError(f"{cfg_path} is not valid JSON ({e})") from None
        from models import ModelConfig, get_architecture
        cfg = ModelConfig.from_hf(self.config)
        self._arch = get_architecture(cfg.model_type)
        tied = cfg.tie_word_embeddings
        self.files = self._weight_files()
        self.tensors, self.skipped, self.unmapped = {}, [], []
        self._all_float32 = True
        for path in self.files:
            table, _ = read_header(path)
            for raw_name, entry in table.items():
                name = hf_name(raw_name)
                if raw_name.endswith(SKIP_SUFFIXES):
                    self.skipped.append(f"{raw_name} (buffer recomputed at run time)")
                elif raw_name.startswith(SKIP_PREFIXES):
                    self.skipped.append(f"{raw_name} (vision part, unused by the text model)")
                elif name == "lm_head.weight" and tied:
                    self.skipped.append(f"{raw_name} (tied to model.embed_tokens.weight)")
                elif name in self.tensors:
                    raise VkharpError(f"{self.src}: tensor {name} appears twice ({self.tensors[name].ref[0].name} "
                                      f"and {path.name})")
                elif entry.dtype not in FLOAT_CODES:
                    raise VkharpError(f"{path}: tensor {raw_name} has dtype {entry.dtype}; only float tensors "
                                      f"(F32, F16, BF16) can be converted")
                else:
                    self.tensors[name] = SourceTensor(name, entry.shape, FLOAT_CODES[entry.dtype], (path, entry))
                    if entry.dtype != "F32" and len(entry.shape) == 2:
                        self._all_float32 = False
        split_fused(self.tensors, self._arch.fused_splits(cfg), cfg.num_hidden_layers)

    def _weight_files(self) -> list[Path]:
        index = self.src / "model.safetensors.index.json"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (KeyError, json.JSONDecodeError) as e:
                raise VkharpError(f"{index} is corrupt ({e})") from None
            files = sorted(set(weight_map.values()))
            for f in files:
                if not (self.src / f).is_file():
                    raise VkharpError(f"{self.src}: shard {f} (listed in model.safetensors.index.json) is missing")
            return [self.src / f for f in files]
        files = sorted(self.src.glob("*.safetensors"))
        if len(files) > 1:  # some repos ship consolidated.safetensors (another layout) beside model*.safetensors
            files = [f for f in files if not f.name.startswith("consolidated")] or files
        if files:
            return files
        for pattern in PICKLE_PATTERNS:
            found = sorted(self.src.glob(pattern))
            if found:
                raise pickle_refusal(self.src, found[0].name)
        raise VkharpError(f"{self.src}: no *.safetensors weights found")

    def default_format(self, t: SourceTensor) -> str:
        return "f32" if self._all_float32 else "f16"

    def read(self, t: SourceTensor, fmt: str) -> Converted:
        stored, rows = resolve(t)
        path, entry = stored.ref
        data = read_tensor(path, entry)
        if rows is not None:
            data = data[rows]
        if data.ndim == 1:
            w = np.array(to_float32(data, entry.dtype), dtype=np.float32)
            if self._arch.norm_offset and self._arch.is_norm(t.name):
                w += np.float32(self._arch.norm_offset)
            return Converted(w)
        return pack_rows(t.name, t.shape, fmt, lambda r0, r1: to_float32(data[r0:r1], entry.dtype),
                         exact_source=(fmt == t.source_format))

    def side_files(self) -> dict[str, bytes]:
        out = {"config.json": self.config_bytes}
        tok = self.src / "tokenizer.json"
        if not tok.is_file():
            raise VkharpError(f"{self.src}: no tokenizer.json (the runtime needs the fast-tokenizer file). Write "
                              f"it with transformers: AutoTokenizer.from_pretrained('{self.src}')"
                              f".save_pretrained('{self.src}')")
        for name in SIDE_FILES:
            p = self.src / name
            if p.is_file():
                out[name] = p.read_bytes()
        if "chat_template.jinja" not in out and "tokenizer_config.json" in out:
            template = chat_template_of(json.loads(out["tokenizer_config.json"]))
            if template:
                out["chat_template.jinja"] = template.encode()
        return out

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.src.resolve()),
                "bytes": sum(os.path.getsize(f) for f in self.files)}


def chat_template_of(tokenizer_config: dict) -> str | None:
    """The default chat template of a tokenizer_config.json (a string, or a list of named templates)."""
    t = tokenizer_config.get("chat_template")
    if isinstance(t, list):
        named = {x.get("name"): x.get("template") for x in t if isinstance(x, dict)}
        t = named.get("default") or next(iter(named.values()), None)
    return t if isinstance(t, str) and t else None
