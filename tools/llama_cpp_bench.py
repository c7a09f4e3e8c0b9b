"""llama.cpp (llama-cpp-python) on a GGUF file, timed like `vkharp bench`: prefill 128/512, decode 128.

Never a dependency. Build it in its own venv (it wants numpy 2; kp pins numpy < 2):
    python3 -m venv /tmp/lcp && CMAKE_ARGS="-DGGML_CCACHE=OFF" /tmp/lcp/bin/pip install llama-cpp-python
    /tmp/lcp/bin/python tools/llama_cpp_bench.py PATH.gguf
Its Vulkan backend (CMAKE_ARGS="-DGGML_VULKAN=on") needs Vulkan headers newer than Debian 12's
1.3.239 (vk::LayerSettingEXT) plus glslc and spirv-headers.
"""
import sys, time, numpy as np
from llama_cpp import Llama
path = sys.argv[1]
llm = Llama(model_path=path, n_ctx=1024, n_gpu_layers=0, n_threads=2, n_batch=512, verbose=False)
rng = np.random.default_rng(0)
def med(fn, k=3):
    fn(); ts = []
    for _ in range(k):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return sorted(ts)[k // 2]
for n in (128, 512):
    p = [int(t) for t in rng.integers(3, 49152, n)]
    def pre(): llm.reset(); llm.eval(p)
    t = med(pre); print(f"prefill {n}: {n / t:.1f} tok/s")
p = [int(t) for t in rng.integers(3, 49152, 128)]
def dec():
    llm.reset(); llm.eval(p)
    for _ in range(128): llm.eval([5])
tp = med(lambda: (llm.reset(), llm.eval(p)))
td = med(dec)
print(f"decode 128: {128 / (td - tp):.1f} tok/s")
