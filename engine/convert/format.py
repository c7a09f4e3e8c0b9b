"""vkharp's converted-model directory: what `vkharp convert` writes and the runtime reads.

    DST/manifest.json   {"format": "vkharp", "version": 1,
                         "architecture": "llama" | "mistral" | "qwen2" | "gemma3",
                         "dtype": the requested weight format, or "auto" (each tensor kept in its source's),
                         "source": {"kind": "hf" | "gguf", "path": ..., "bytes": ...},
                         "tensors": {hf_name: {"format": f32|f16|q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|q5_k|q6_k|iq4_nl|iq4_xs|q2_k|q3_k,
                                               "shape": [rows, cols] or [n],
                                               "file": "model.safetensors",
                                               "source_format": e.g. "bf16", "q4_k",
                                               "rel_error": ‖stored − source‖ / ‖source‖ (only when lossy),
                                               "note": why the format differs from the request (if it does),
                                               "sha256": of its arrays' bytes, in file order}},
                         "skipped": [source tensors deliberately not converted, with the reason],
                         "files": {filename: sha256}, "file_sizes": {filename: bytes}}
    DST/config.json     the HF config (copied as read from an HF source; rebuilt from metadata for a GGUF);
                        the runtime parses it with models.ModelConfig.from_hf
    DST/tokenizer.json  a `tokenizers` file (rebuilt from metadata for a GGUF), plus when present:
                        tokenizer_config.json, special_tokens_map.json, generation_config.json,
                        chat_template.jinja (the chat template always lands here when the source has one)
    DST/model.safetensors  (model-0000K-of-0000N.safetensors when split) ordinary safetensors files:
                        per 2-D weight W [rows, cols]: "W.qs" uint32 [rows, words_per_row] and, for q
                        formats, "W.scales" (quant.scale_layout: uint16 [rows, cols/32] for q8_0, q4_0,
                        q5_0, iq4_nl; uint32 [rows, cols/32] for q4_1, q5_1; uint32 [rows, cols/64] for q4_k,
                        q5_k; uint16 [rows, cols/256] for q6_k; uint32 [rows, cols/128] for iq4_xs;
                        uint32 [rows, cols/256] for q2_k; uint16 [rows, 7*cols/256] for q3_k), exactly
                        as engine.quant.Packed holds them (engine/kquant.py: the 5-bit and k-quant
                        layouts; engine/iquant.py: the iq4 ones; engine/kquant23.py: q2_k, q3_k);
                        1-D tensors (norms, biases) as float32 "W" [n]. Tensor names are HF's, verbatim.

    DST/verified.json   the stamp of the last checksum verification (verify.py; not in "files")

Norm weights are stored as the effective multipliers (Gemma: 1 + w), see models/base.py. Every file
but the manifest is listed in "files" with its sha256, so `open_model_dir(path, verify=True)` detects
any corruption, and names the damaged tensors; verify="once" (what the runtime uses) hashes only
when a file changed since the last verification; without verify, sizes and safetensors headers are
still checked (cheap). vkharp writes nothing else into DST, and replaces (--overwrite) only a
directory that holds nothing else (replace_refusal).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from ..errors import DamagedModelDir, VkharpError
from ..quant import Packed, has_scales, scale_layout, words_per_row
from .safetensors_io import read_header

FORMAT_NAME = "vkharp"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
              "chat_template.jinja")
REBUILD_HINT = "re-run `vkharp convert` on the original checkpoint"


def arrays_for(name: str, fmt: str, shape: tuple[int, ...]) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """The safetensors entries (key, dtype, shape) that hold tensor `name` stored as `fmt`."""
    if len(shape) == 1:
        return [(name, np.dtype(np.float32), tuple(shape))]
    rows, cols = shape
    out = [(f"{name}.qs", np.dtype(np.uint32), (rows, words_per_row(fmt, cols)))]
    sl = scale_layout(fmt, cols)
    if sl is not None:
        out.append((f"{name}.scales", np.dtype(sl[1]), (rows, sl[0])))
    return out


def arrays_of(name: str, value) -> list[tuple[str, np.ndarray]]:
    """The arrays to write for one converted tensor (a Packed matrix or a float32 vector)."""
    if isinstance(value, Packed):
        out = [(f"{name}.qs", value.qs)]
        if value.scales is not None:
            out.append((f"{name}.scales", value.scales))
        return out
    return [(name, np.asarray(value, dtype=np.float32))]


def shard_names(n: int) -> list[str]:
    return ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


class ModelDir:
    """A validated converted directory; tensors are read one at a time (memory stays bounded)."""

    def __init__(self, path: Path, manifest: dict):
        from models import ModelConfig, get_architecture
        self.path = Path(path)
        self.manifest = manifest
        try:
            hf = json.loads((self.path / "config.json").read_text(encoding="utf-8"))
        except ValueError as e:               # JSONDecodeError and UnicodeDecodeError
            _fail(self.path, f"config.json is corrupt ({e})", manifest)
        self.config = ModelConfig.from_hf(hf)
        self.architecture = get_architecture(self.config.model_type)
        self._handles = {}

    @property
    def tensor_names(self) -> list[str]:
        return list(self.manifest["tensors"])

    def info(self, name: str) -> dict:
        try:
            return self.manifest["tensors"][name]
        except KeyError:
            raise VkharpError(f"{self.path}: no tensor {name!r} in this converted model") from None

    def format(self, name: str) -> str:
        return self.info(name)["format"]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.info(name)["shape"])

    def _get(self, filename: str, name: str) -> np.ndarray:
        """One tensor read with plain file reads: its memory is freed once the caller drops it (a memory
        map would keep the pages resident and count the whole file against the loading process)."""
        if filename not in self._handles:
            from .safetensors_io import read_header
            self._handles[filename] = read_header(self.path / filename)[0]
        try:
            entry = self._handles[filename][name]
        except KeyError:
            _fail(self.path / filename, f"tensor {name!r} is missing")
        dt = np.dtype(_np_dtype(entry.dtype))
        count = int(np.prod(entry.shape, dtype=np.int64))
        with open(self.path / filename, "rb") as f:
            arr = np.fromfile(f, dtype=dt, count=count, offset=entry.begin)
        if arr.size != count:
            _fail(self.path / filename, f"tensor {name!r} is truncated")
        return arr.reshape(entry.shape)

    def load(self, name: str):
        """A Packed matrix for a 2-D tensor, a float32 vector for a 1-D one."""
        info = self.info(name)
        shape = tuple(info["shape"])
        if len(shape) == 1:
            return self._get(info["file"], name)
        fmt = info["format"]
        scales = self._get(info["file"], f"{name}.scales") if has_scales(fmt) else None
        return Packed(fmt, shape[0], shape[1], self._get(info["file"], f"{name}.qs"), scales)

    def read_text(self, filename: str) -> str | None:
        p = self.path / filename
        return p.read_text(encoding="utf-8") if p.exists() else None

    @property
    def tokenizer_path(self) -> Path:
        return self.path / "tokenizer.json"

    def chat_template(self) -> str | None:
        return self.read_text("chat_template.jinja")

    def generation_config(self) -> dict:
        text = self.read_text("generation_config.json")
        return json.loads(text) if text else {}


def _fail(path: Path, what: str, manifest: dict | None = None):
    from .verify import reconvert_hint
    raise DamagedModelDir(path, what, reconvert_hint(path, manifest) if manifest else REBUILD_HINT)


def open_model_dir(path, verify: bool | str = False) -> ModelDir:
    """Check a converted directory (manifest, files, sizes, headers) and open it. verify=True hashes
    every file; verify="once" only when a file changed since the last verification (verify.py)."""
    if verify not in (False, True, "once"):
        raise ValueError(f"verify must be False, True or 'once', got {verify!r}")
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        _fail(path, f"no {MANIFEST} (not a converted vkharp model, or an interrupted conversion)")
    try:
        manifest = json.loads(mpath.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(path, f"{MANIFEST} is corrupt ({e})")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        _fail(path, f"{MANIFEST} is not a vkharp manifest")
    if manifest.get("version") != FORMAT_VERSION:
        _fail(path, f"format version {manifest.get('version')} is not the supported version {FORMAT_VERSION}")
    files, sizes = manifest.get("files", {}), manifest.get("file_sizes", {})
    for name in ("config.json", "tokenizer.json"):
        if name not in files:
            _fail(path, f"{MANIFEST} lists no {name}", manifest)
    for name, digest in files.items():
        p = path / name
        if not p.is_file():
            _fail(path, f"missing file {name}", manifest)
        if name in sizes and p.stat().st_size != sizes[name]:
            _fail(path, f"{name} has {p.stat().st_size} bytes, the manifest says {sizes[name]}", manifest)
    headers = {}
    for name, info in manifest.get("tensors", {}).items():
        fname = info.get("file")
        if fname not in files:
            _fail(path, f"tensor {name} is in {fname!r}, which the manifest does not list", manifest)
        if fname not in headers:
            try:
                headers[fname] = read_header(path / fname)[0]
            except VkharpError as e:
                _fail(path, str(e), manifest)
        for key, dtype, shape in arrays_for(name, info["format"], tuple(info["shape"])):
            entry = headers[fname].get(key)
            if entry is None or entry.shape != shape or np.dtype(_np_dtype(entry.dtype)) != dtype:
                _fail(path, f"{fname} lacks {key} {dtype}{list(shape)} or holds it with another shape/dtype", manifest)
    if verify:
        from .verify import verify as check
        check(path, manifest, once=verify == "once")
    return ModelDir(path, manifest)


_OWN_NAMES = re.compile(r"^(manifest\.json|config\.json|verified\.json|model(-\d{5}-of-\d{5})?\.safetensors|"
                        + "|".join(re.escape(n) for n in SIDE_FILES) + ")$")


def replace_refusal(path) -> str | None:
    """Why path must not be replaced by a conversion (--overwrite), or None when it is a vkharp model
    directory holding only what vkharp writes there (a damaged one included: its manifest may be gone
    wrong, but every name in it is ours)."""
    from .staging import MARKER, is_leftover_name
    path = Path(path)
    if path.is_symlink():
        return "is a symbolic link, not a vkharp model directory"
    if not path.is_dir():
        return "is a file, not a vkharp model directory"
    entries = sorted(os.listdir(path))
    if MANIFEST not in entries:
        return f"holds no {MANIFEST}, so it is not a vkharp model directory"
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (UnicodeDecodeError, ValueError):
        manifest = None                   # damaged: only vkharp's own names may be there
    if manifest is not None and not (isinstance(manifest, dict) and manifest.get("format") == FORMAT_NAME):
        return f"holds a {MANIFEST} that is not vkharp's, so it is not a vkharp model directory"
    listed = set(manifest.get("files", {})) if manifest else set()
    foreign = [e for e in entries if not (e in listed or e == MARKER or _OWN_NAMES.match(e) or is_leftover_name(e))
               or (path / e).is_dir()]
    if foreign:
        return (f"holds {len(foreign)} entr{'ies' if len(foreign) > 1 else 'y'} vkharp did not write there "
                f"({', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''})")
    return None


def _np_dtype(code: str):
    from .safetensors_io import DTYPES
    return DTYPES[code]
