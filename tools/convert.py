#!/usr/bin/env python3
"""Convert a Hugging Face model directory or a GGUF file into vkharp's format.

    python tools/convert.py SRC DST [--dtype q8_0] [--overwrite] [--verify] [--quiet]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.cli import main as vkharp  # noqa: E402


def main(argv=None) -> int:
    """`vkharp convert ARGS`: the one CLI's parser, errors and exit codes."""
    return vkharp(["convert", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
