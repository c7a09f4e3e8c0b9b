#!/usr/bin/env python3
"""Convert a Hugging Face model directory or a GGUF file into vkharp's format.

    python tools/convert.py SRC DST [--dtype q8_0] [--overwrite] [--verify] [--quiet]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.convert.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
