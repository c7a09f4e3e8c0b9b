#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) on a GGUF file, timed as `vkharp bench` times it (engine/bench.py's
llama_cpp_compare): prefill of each prompt size, then decoded tokens, median of the repeats.

Never a dependency. llama-cpp-python wants numpy 2 while kp pins numpy < 2, so it lives in a venv of
its own; `vkharp bench --llama-cpp /tmp/lcp/bin/python` (or VKHARP_LLAMA_CPP_PYTHON) runs this script
under that interpreter in the same invocation and prints the ratios. Build the venv (offline: pip
builds llama.cpp from the sdist, a few minutes on 2 cores):
    python3 -m venv /tmp/lcp && CMAKE_ARGS="-DGGML_CCACHE=OFF" /tmp/lcp/bin/pip install llama-cpp-python==0.3.36
    /tmp/lcp/bin/python tools/llama_cpp_bench.py PATH.gguf [--prompts 128 512] [--decode 128] [--json]
That is llama.cpp's CPU backend. Its Vulkan backend (CMAKE_ARGS="-DGGML_VULKAN=on") needs Vulkan
headers newer than Debian 12's 1.3.239 (vk::LayerSettingEXT) plus glslc and spirv-headers.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.bench import llama_cpp_compare  # noqa: E402  (imports no kp)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf")
    ap.add_argument("--prompts", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="one JSON line: {prefill: {n: tok/s}, decode_tok_s}")
    ap.add_argument("--no-extra-bufts", action="store_true",
                    help="without llama.cpp's extra weight buffer types (AMX, repacked layouts), as its own flag")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    result = {"prefill": {}, "decode_tok_s": None}
    for i, n in enumerate(a.prompts):
        # decode is timed once, after the first prompt (as vkharp bench decodes after its first prompt)
        r = llama_cpp_compare(a.gguf, rng.integers(3, 1000, n), a.decode if i == 0 else 1, a.repeats,
                              extra_bufts=not a.no_extra_bufts)
        if r is None:
            print("llama_cpp does not import under this interpreter; see this file's docstring", file=sys.stderr)
            return 1
        result["prefill"][n] = r["prefill_tok_s"]
        if i == 0:
            result["decode_tok_s"] = r["decode_tok_s"]
        if not a.json:
            print(f"prompt {n}: prefill {r['prefill_tok_s']:.1f} tok/s"
                  + (f", decode {r['decode_tok_s']:.1f} tok/s" if i == 0 else ""))
    if a.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
