"""The `convert` command's options and body, shared by tools/convert.py and the `vkharp` CLI.

Wiring into engine/cli.py:  s = sub.add_parser("convert", help=HELP); add_arguments(s); s.set_defaults(func=run)
"""
from __future__ import annotations

import argparse

from ..quant import DTYPES

HELP = "convert a Hugging Face model directory or a GGUF file into vkharp's format"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="HF model directory (config.json + *.safetensors) or a .gguf file")
    p.add_argument("dst", help="output directory")
    p.add_argument("--dtype", choices=DTYPES, help="format of the 2-D weights (default: f16 from HF, f32 if "
                   "the checkpoint is f32; from GGUF each tensor's own type, other quantizations as f16)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace dst if it is a vkharp model directory (never anything else, never the source)")
    p.add_argument("--verify", action="store_true", help="re-read the result and check every checksum")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    """Convert; VkharpError propagates (the caller prints it)."""
    from . import convert, open_model_dir
    dst = convert(args.src, args.dst, dtype=args.dtype, progress=not args.quiet, overwrite=args.overwrite)
    if args.verify:
        open_model_dir(dst, verify=True)
    print(dst)
    return 0
