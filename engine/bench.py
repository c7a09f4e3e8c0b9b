"""`vkharp bench [MODEL]`: load time, prefill and decode speed, peak host memory, and the bandwidth floor.

The floor: decoding one token must read every weight once, so tok/s can never beat
    device read bandwidth / weight bytes per token.
The bandwidth is measured here, through our own shader (a large buffer scaled into another: bytes
read + written over time), so the ratio says how far the engine is from what this device can do.
"""
from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np

from .device import Device
from .kernel_bench import median_time


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def copy_bandwidth(dev: Device, nbytes: int = 64 << 20, repeats: int = 7) -> float:
    """Bytes per second moved (read + written) by our copy shader over a large buffer; the best of a
    few run lengths per invocation (CPU drivers want long streams, GPUs short coalesced ones)."""
    from .ops.elementwise import copy_bw
    n = (min(nbytes, dev.max_buffer_bytes) // 16) * 4
    a, b = dev.buffer(n), dev.buffer(n)
    best = 0.0
    for run in (1, 16, 256, 1024):
        rec = dev.recorder()
        copy_bw(rec, b, a, run=run)
        t, _ = median_time(rec.finish().run, repeats)
        best = max(best, 2 * n * 4 / t)
    return best


def run_model_bench(path, device: int | None = None, *, prompt_tokens: int = 128, decode_tokens: int = 64,
                    repeats: int = 3, ctx: int = 1024, json_path: str | None = None, out=sys.stdout) -> dict:
    from .model import load
    rss0 = peak_rss_bytes()
    t0 = time.perf_counter()
    model = load(path, device, ctx=ctx)
    load_s = time.perf_counter() - t0
    rss_load = peak_rss_bytes()
    dev = model.device
    rng = np.random.default_rng(0)
    prompt = rng.integers(3, model.cfg.vocab_size, prompt_tokens)

    def prefill():
        model.kv.reset()
        model.prefill(prompt)

    t_first = time.perf_counter()
    prefill()                                   # records the programs (pipelines compile here)
    model.decode_logits(int(prompt[-1]))
    warm_s = time.perf_counter() - t_first
    t_pre, spread_pre = median_time(prefill, repeats, warmup=0)

    def decode():
        model.kv.truncate(prompt_tokens)
        tok = int(prompt[-1])
        for _ in range(decode_tokens):
            model.prefill([tok], readback="none")

    t_dec, spread_dec = median_time(decode, repeats, warmup=1)
    bw = copy_bandwidth(dev)
    weights_per_token = model.weight_bytes  # every weight is read once per decoded token
    floor_tps = bw / weights_per_token
    r = {
        "model": str(model.path), "device": dev.info.name, "load_s": load_s, "first_run_s": warm_s,
        "pipelines": dev.n_pipelines,
        "prefill_tok_s": prompt_tokens / t_pre, "prefill_spread": spread_pre,
        "decode_tok_s": decode_tokens / t_dec, "decode_spread": spread_dec,
        "weight_bytes": weights_per_token, "bandwidth_gb_s": bw / 1e9, "floor_tok_s": floor_tps,
        "peak_host_mb_load": (rss_load - rss0) / 2**20, "peak_host_mb": peak_rss_bytes() / 2**20,
    }
    r["decode_vs_floor"] = r["decode_tok_s"] / floor_tps
    print(f"{model.cfg.model_type} from {model.path} on {dev.info.name}", file=out)
    print(f"  load {load_s:.2f} s (+{warm_s:.1f} s recording {dev.n_pipelines} pipelines on first use); "
          f"weights {weights_per_token / 2**20:.1f} MiB; peak host memory {r['peak_host_mb']:.0f} MiB "
          f"(+{r['peak_host_mb_load']:.0f} MiB while loading)", file=out)
    print(f"  prefill {r['prefill_tok_s']:7.1f} tok/s  ({prompt_tokens} tokens, median of {repeats}, "
          f"spread {spread_pre:.0%})", file=out)
    print(f"  decode  {r['decode_tok_s']:7.1f} tok/s  ({decode_tokens} tokens, median of {repeats}, "
          f"spread {spread_dec:.0%})", file=out)
    print(f"  floor   {floor_tps:7.1f} tok/s  = {bw / 1e9:.1f} GB/s (copy through our shader) / "
          f"{weights_per_token / 1e6:.1f} MB of weights per token; decode at {r['decode_vs_floor']:.0%} of it",
          file=out)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(r, f, indent=1)
    return r
