#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) on a GGUF file, timed as `vkharp bench` times it (engine/bench.py's
llama_cpp_compare): prefill of 128 and 512 tokens, 128 decoded tokens, median of 3.

Never a dependency. `vkharp bench` runs this by itself when llama_cpp imports in vkharp's venv; it
wants numpy 2 while kp pins numpy < 2, so build it in a venv of its own and run this script there:
    python3 -m venv /tmp/lcp && CMAKE_ARGS="-DGGML_CCACHE=OFF" /tmp/lcp/bin/pip install llama-cpp-python
    /tmp/lcp/bin/python tools/llama_cpp_bench.py PATH.gguf
Its Vulkan backend (CMAKE_ARGS="-DGGML_VULKAN=on") needs Vulkan headers newer than Debian 12's
1.3.239 (vk::LayerSettingEXT) plus glslc and spirv-headers.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.bench import llama_cpp_compare  # noqa: E402  (imports no kp)

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: llama_cpp_bench.py PATH.gguf")
    rng = np.random.default_rng(0)
    for n in (128, 512):
        r = llama_cpp_compare(sys.argv[1], rng.integers(3, 1000, n), 128, 3)
        if r is None:
            sys.exit("llama_cpp does not import here; see this file's docstring")
        print(f"prompt {n}: prefill {r['prefill_tok_s']:.1f} tok/s, decode {r['decode_tok_s']:.1f} tok/s")
