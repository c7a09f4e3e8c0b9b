"""convert(src, dst): one validated mapping from a checkpoint to vkharp's directory format (format.py).

Everything is checked before a byte is written (architecture, every tensor's presence and shape,
nothing unmapped); then tensors are converted one at a time into DST.tmp-PID-XXXX, which replaces DST
only when complete. Any failure (or Ctrl-C, or SIGTERM through the CLI) removes the temporary
directory; what a killed run left is removed by the next one (staging.py). An existing DST is
replaced only with overwrite, only when it is a vkharp model directory holding nothing else
(format.replace_refusal), and never when it is, or holds, the source.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from ..errors import VkharpError, WriteError
from ..quant import DTYPES, block_cols
from . import staging
from .format import FORMAT_NAME, FORMAT_VERSION, MANIFEST, arrays_for, arrays_of, replace_refusal, shard_names
from .verify import tensor_digest, write_stamp
from .safetensors_io import StreamWriter
from .source import Source, SourceTensor

MAX_FILE_BYTES = 4 * 2**30   # split model.safetensors past this (some filesystems and tools dislike larger)


def open_source(src) -> Source:
    from .gguf import GGUFSource, is_gguf
    from .hf import HFSource, pickle_refusal
    src = Path(src)
    if not src.exists():
        raise VkharpError(f"{src} does not exist")
    if src.is_dir():
        return HFSource(src)
    if is_gguf(src):
        return GGUFSource(src)
    if src.suffix in (".bin", ".pt", ".pth", ".ckpt"):
        raise pickle_refusal(src, src.name)
    raise VkharpError(f"{src} is neither a Hugging Face model directory nor a GGUF file")


def check_tensors(source: Source, expected: dict[str, tuple[int, ...]], arch_name: str) -> None:
    """Every expected tensor present with its shape, nothing left over; else one error naming them."""
    problems = []
    missing = [n for n in expected if n not in source.tensors]
    if missing:
        problems.append(f"missing tensor(s): {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    extra = sorted(set(source.tensors) - set(expected)) + list(source.unmapped)
    if extra:
        problems.append(f"tensor(s) with no place in a {arch_name} model: {', '.join(extra[:8])}"
                        f"{' ...' if len(extra) > 8 else ''}")
    for name, shape in expected.items():
        t = source.tensors.get(name)
        if t is not None and tuple(t.shape) != tuple(shape):
            problems.append(f"{name} has shape {list(t.shape)}, the config implies {list(shape)}")
    if problems:
        raise VkharpError("the checkpoint does not match its config: " + "; ".join(problems))


# Where rows are not whole 256-column super-blocks, a k-quant falls back as llama.cpp's quantizer does.
K_FALLBACK = {"q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}


def target_format(t: SourceTensor, dtype: str | None, source: Source) -> tuple[str, str | None]:
    """(stored format, note) of one tensor: vectors f32; q formats need whole blocks of columns (32;
    256 for the k-quants, else their 32-column fallback), else f16."""
    if len(t.shape) == 1:
        return "f32", None
    fmt = dtype or source.default_format(t)
    cols = t.shape[1]
    if fmt in K_FALLBACK and cols % block_cols(fmt) and cols % block_cols(K_FALLBACK[fmt]) == 0:
        return K_FALLBACK[fmt], (f"{cols} columns are not a multiple of {block_cols(fmt)}: stored "
                                 f"{K_FALLBACK[fmt]} instead of {fmt}")
    if cols % block_cols(fmt):
        return "f16", f"{cols} columns are not a multiple of {block_cols(fmt)}: stored f16 instead of {fmt}"
    return fmt, None


def _split(entries: list[tuple[str, list]], max_bytes: int) -> list[list[tuple[str, list]]]:
    """Tensors (with their arrays) grouped into files of at most max_bytes (a bigger tensor gets its own)."""
    groups, size = [[]], 0
    for name, arrays in entries:
        n = sum(int(np.prod(s, dtype=np.int64)) * d.itemsize for _, d, s in arrays)
        if groups[-1] and size + n > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append((name, arrays))
        size += n
    return groups


def convert(src, dst, dtype: str | None = None, progress: bool = True, overwrite: bool = False,
            max_file_bytes: int = MAX_FILE_BYTES) -> Path:
    """Convert a HF directory or a .gguf file into vkharp's format at dst; returns dst.

    dtype: f32|f16|q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|q5_k|q6_k for 2-D weight matrices (norms and biases stay f32); None keeps f16
    from HF checkpoints (f32 when the checkpoint is f32) and each tensor's own type from a GGUF.
    """
    from models import ModelConfig, get_architecture
    if dtype is not None and dtype not in DTYPES:
        raise VkharpError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    dst = Path(dst)
    _check_destination(Path(src), dst, overwrite)
    source = open_source(src)
    try:
        cfg = ModelConfig.from_hf(source.config)
        arch = get_architecture(cfg.model_type)
        arch.validate(cfg)
        expected = arch.tensor_shapes(cfg)
        check_tensors(source, expected, arch.name)
        plan = []
        for name in expected:
            t = source.tensors[name]
            fmt, note = target_format(t, dtype, source)
            if arch.stored_f32(name) and fmt != "f32":   # e.g. Local1D weights: their kernel reads f32
                fmt, note = "f32", f"kept f32 instead of {dtype or fmt}: {arch.name} computes this tensor in f32 only"
            plan.append((t, fmt, note))
        side = source.side_files()
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            for p in staging.remove_dead_leftovers(dst.parent):
                if progress:
                    print(f"removed {p}, left by an interrupted run", file=sys.stderr)
            tmp = staging.make_dir(dst.parent, dst.name)
        except OSError as exc:
            raise WriteError(dst, exc) from exc
        try:
            manifest = _write(tmp, source, arch.name, plan, side, dtype, progress, max_file_bytes)
            write_stamp(tmp, manifest)            # it hashed what it wrote: the result starts out verified
            _publish(tmp, Path(src), dst, overwrite)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if WriteError.concerns(exc, tmp, dst):
                raise WriteError(dst, exc) from exc
            raise                                  # reading the source failed: the CLI names the file
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        source.close()
    if progress:
        lossy = [v["rel_error"] for v in manifest["tensors"].values() if "rel_error" in v]
        if lossy:
            print(f"converted {len(plan)} tensors; lossy steps: {len(lossy)} tensors, relative error "
                  f"max {max(lossy):.2e}", file=sys.stderr)
    return dst


def _write(tmp: Path, source: Source, arch_name: str, plan, side: dict, dtype, progress: bool,
           max_file_bytes: int) -> dict:
    from tqdm import tqdm
    entries = [(t.name, arrays_for(t.name, fmt, t.shape)) for t, fmt, _ in plan]
    groups = _split(entries, max_file_bytes)
    fnames = shard_names(len(groups))
    file_of = {name: fnames[g] for g, group in enumerate(groups) for name, _ in group}
    tensors, files, sizes = {}, {}, {}
    bar = tqdm(total=len(plan), desc="converting", unit="tensor", disable=not progress, file=sys.stderr)
    it = iter(plan)
    for fname, group in zip(fnames, groups):
        layout = [a for _, arrays in group for a in arrays]
        writer = StreamWriter(tmp / fname, layout, {"format": FORMAT_NAME})
        try:
            for _ in group:
                t, fmt, note = next(it)
                conv = source.read(t, fmt)
                arrays = arrays_of(t.name, conv.value)
                for key, arr in arrays:
                    writer.write(key, arr)
                info = {"format": fmt, "shape": list(t.shape), "file": file_of[t.name], "source_format": t.source_format,
                        "sha256": tensor_digest([a for _, a in arrays])}
                if conv.rel_error is not None:
                    info["rel_error"] = float(f"{conv.rel_error:.3e}")
                if note:
                    info["note"] = note
                tensors[t.name] = info
                bar.update(1)
        except BaseException:
            writer.abort()
            raise
        files[fname] = writer.close()
        sizes[fname] = writer.size
    bar.close()
    for name, data in side.items():
        (tmp / name).write_bytes(data)
        files[name] = hashlib.sha256(data).hexdigest()
        sizes[name] = len(data)
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "architecture": arch_name,
                "dtype": dtype or "auto", "source": source.describe(), "tensors": tensors,
                "skipped": list(source.skipped), "files": files, "file_sizes": sizes}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    """What may stand at dst: nothing, or with overwrite a vkharp model directory that is not (and
    does not hold) the source. Checked before the conversion starts and again before the swap."""
    if not (dst.exists() or dst.is_symlink()):
        return
    if not overwrite:
        raise VkharpError(f"{dst} already exists; pass overwrite=True (--overwrite) to replace it")
    s, d = src.resolve(), dst.resolve()
    if s == d or d in s.parents:
        raise VkharpError(f"--overwrite would replace {dst}, which is the source of this conversion or holds it; "
                          f"choose another destination")
    why = replace_refusal(dst)
    if why:
        raise VkharpError(f"--overwrite replaces only a vkharp model directory, and {dst} {why}; nothing was "
                          f"changed: choose another destination, or move it away yourself")


def _publish(tmp: Path, src: Path, dst: Path, overwrite: bool) -> None:
    """Move the finished directory into place; an old dst (overwrite) is removed only afterwards."""
    if not (dst.exists() or dst.is_symlink()):
        try:
            os.replace(tmp, dst)
        except OSError:
            if not dst.exists():
                raise
            # another process published the same destination meanwhile: the checks below decide
        else:
            staging.unmark(dst)                   # from here on dst is a finished directory
            return
    _check_destination(src, dst, overwrite)       # again: dst may have changed during the conversion
    old = staging.make_dir(dst.parent, dst.name, "old")
    with staging.signals_held():                  # Ctrl-C or SIGTERM cannot fall between the two renames
        os.replace(dst, old / "d")
        try:
            os.replace(tmp, dst)
        except BaseException:
            os.replace(old / "d", dst)            # the old one goes back
            raise
    staging.unmark(dst)
    shutil.rmtree(old, ignore_errors=True)
