"""`vkharp bench --kernels`: time every kernel at model-like sizes, next to numpy on the same machine.

Each kernel is recorded REPS times into one program (so the per-submission cost is amortised) and the
program is replayed; the figure is the median time per dispatch. Bytes are the bytes a kernel must
move at least (weights + activations), so GB/s compares directly with the machine's read bandwidth.
Dispatch overhead and sync-point cost are measured separately: on lavapipe they dominate small kernels.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from . import ops
from .device import Device
from .quant import block_cols

BENCHES: list[tuple[str, Callable]] = []


def bench(name: str):
    """Register fn(dev, reps) -> (program, bytes_per_dispatch, flops_per_dispatch, numpy_fn or None)."""
    def deco(fn):
        BENCHES.append((name, fn))
        return fn
    return deco


@dataclass
class Row:
    name: str
    us: float
    gbs: float
    gflops: float
    numpy_us: float | None
    spread: float


ROUNDS = 5   # interleaved rounds of the whole table (spread: of the rounds' medians)


def median_time(fn: Callable[[], None], repeats: int, warmup: int = 2) -> tuple[float, float]:
    """Median seconds per call and the relative spread (max−min)/median."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    med = ts[len(ts) // 2]
    return med, (ts[-1] - ts[0]) / med if med else 0.0


@bench("dispatch overhead (1-element fill, no sync)")
def _overhead(dev, reps):
    bufs = [dev.buffer(1, np.uint32) for _ in range(reps)]
    rec = dev.recorder()
    with rec.parallel():
        for b in bufs:
            ops.fill_u32(rec, b, value=1)
    return rec.finish(), 0, 0, None


@bench("barrier (1-element dependent chain)")
def _sync(dev, reps):
    a, b = dev.buffer(1, np.uint32), dev.buffer(1, np.uint32)
    rec = dev.recorder()
    for i in range(reps):
        ops.chain_step(rec, b if i % 2 == 0 else a, a if i % 2 == 0 else b)
    return rec.finish(), 8, 0, None


def _norm_bench(rows, dim):
    def fn(dev, reps):
        x = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
        xb, w = dev.buffer(x), dev.buffer(np.ones(dim, np.float32), kind="const")
        outs = [dev.buffer((rows, dim)) for _ in range(reps)]
        rec = dev.recorder()
        with rec.parallel():
            for o in outs:
                ops.rmsnorm(rec, o, xb, w, eps=1e-5)

        def np_fn():
            x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5)
        return rec.finish(), 8 * rows * dim + 4 * dim, 4 * rows * dim, np_fn
    return fn


bench("rmsnorm 1x576")(_norm_bench(1, 576))
bench("rmsnorm 64x576")(_norm_bench(64, 576))


def _matvec_bench(fmt: str, rows: int, cols: int):
    def fn(dev, reps):
        from .ops.matmul import matvec
        from .quant import dequantize, quantize
        from .weights import upload_weight
        rng = np.random.default_rng(0)
        packed = quantize(rng.standard_normal((rows, cols)).astype(np.float32) * 0.05, fmt)
        w = upload_weight(dev, packed, f"w_{fmt}")
        x = rng.standard_normal(cols).astype(np.float32)
        xb, out = dev.buffer(x), dev.buffer(rows)
        rec = dev.recorder()
        with rec.parallel():    # the same output each time: one pipeline, no barriers in between
            for _ in range(reps):
                matvec(rec, out, w, xb)
        wf = dequantize(packed)
        return rec.finish(), packed.nbytes + 4 * (rows + cols), 2 * rows * cols, lambda: wf @ x
    return fn


# Every quantized format next to q4_1 (GB/s of its own bytes) at 4096x4096, at the default model's
# shapes, and at Gemma-3-270M's (whose Q4_K_M mixes Q5_0, Q4_K, Q6_K and Q8_0), and GGUF's iq4 types
# and 2-/3-bit k-quants; the k-quants only where the rows are whole 256-column super-blocks.
KQ_COMPARE = ("q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs", "q2_k", "q3_k")
for _fmt in ("f16", "q8_0") + KQ_COMPARE:
    bench(f"matvec {_fmt} 4096x4096")(_matvec_bench(_fmt, 4096, 4096))
for _shape in ((576, 576), (1536, 576), (576, 1536), (49152, 576), (2048, 640), (640, 2048)):
    for _fmt in KQ_COMPARE:
        if _shape[1] % block_cols(_fmt) == 0 and (_fmt == "q4_1" or _shape != (49152, 576)):
            bench(f"matvec {_fmt} {_shape[0]}x{_shape[1]}")(_matvec_bench(_fmt, *_shape))


@bench("attention decode 9/3 heads x64, ctx 1024")
def _attention(dev, reps):
    from .ops.attention import attention
    from .params import pack_step
    rng = np.random.default_rng(0)
    ctx = 1024
    kc, vc = (dev.buffer(rng.standard_normal((ctx, 3, 64)).astype(np.float32)) for _ in range(2))
    q, k, v = dev.buffer((1, 9, 64)), dev.buffer((1, 3, 64)), dev.buffer((1, 3, 64))
    out, step = dev.buffer((1, 9, 64)), dev.buffer(pack_step(pos=ctx - 1, n_tokens=1))
    rec = dev.recorder()
    with rec.parallel():
        for _ in range(reps):
            attention(rec, out, q, k, v, kc, vc, step, n_heads=9, n_kv_heads=3, head_dim=64, scale=0.125)
    return rec.finish(), 2 * ctx * 3 * 64 * 4, 4 * ctx * 9 * 64, None


@bench("sample (top-k 40, top-p 0.95, min-p 0.05) V=49152")
def _sample(dev, reps):
    from .ops.sample import sample
    from .sampling import OUT_WORDS, SamplerSettings, pack_sample_params
    logits = dev.buffer((np.random.default_rng(0).standard_normal(49152) * 3).astype(np.float32))
    words = dev.buffer(pack_sample_params(SamplerSettings(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05), u=0.5))
    out, recent = dev.buffer(OUT_WORDS, np.uint32), dev.buffer(np.zeros(1, np.uint32))
    rec = dev.recorder()
    work = None
    for _ in range(reps):   # the stage restores the logits it touches: dependent, so synced
        work = sample(rec, out, logits, words, recent, vocab=49152, work=work)
    return rec.finish(), 49152 * 4, 0, None


def numpy_read_bandwidth(nbytes: int = 256 << 20) -> float:
    """Bytes per second numpy reads summing a large float32 array (single-threaded)."""
    a = np.ones(nbytes // 4, np.float32)
    t, _ = median_time(lambda: a.sum(), 5)
    return nbytes / t


def run_kernel_bench(dev: Device, out, quick: bool = False, json_path: str | None = None) -> list[Row]:
    """Every kernel in ROUNDS interleaved rounds (each a median of a few replays), then the median over
    rounds: a slow moment of a shared host then slows every kernel alike instead of whichever ran in it,
    which is what makes the ratios between formats comparable."""
    reps = 16 if quick else 64
    rounds, repeats = (1, 5) if quick else (ROUNDS, 5)
    print(f"kernel benchmark on [{dev.index}] {dev.info.name} ({dev.info.type}); "
          f"LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS', '(default)')}; {reps} dispatches per program, "
          f"median of {rounds} interleaved rounds of {repeats} replays", file=out)
    print(f"  {'kernel':<46} {'µs/disp':>9} {'GB/s':>7} {'GFLOP/s':>8} {'numpy µs':>9} {'spread':>7}", file=out)
    built = [(name, *fn(dev, reps)) for name, fn in BENCHES]
    times: dict[str, list[float]] = {name: [] for name, *_ in built}
    for _ in range(rounds):
        for name, prog, *_ in built:
            times[name].append(median_time(prog.run, repeats)[0])
    rows = []
    for name, prog, nbytes, flops, np_fn in built:
        ts = sorted(times[name])
        t = ts[len(ts) // 2]
        spread = (ts[-1] - ts[0]) / t if rounds > 1 else median_time(prog.run, repeats)[1]
        per = t / max(1, prog.n_dispatches)
        np_us = median_time(np_fn, repeats)[0] * 1e6 if np_fn else None
        row = Row(name, per * 1e6, nbytes / per / 1e9, flops / per / 1e9, np_us, spread)
        rows.append(row)
        np_txt = f"{np_us:9.1f}" if np_us is not None else f"{'-':>9}"
        print(f"  {name:<46} {row.us:9.1f} {row.gbs:7.2f} {row.gflops:8.2f} {np_txt} {spread:7.0%}", file=out)
    ratios = ratios_to_q4_1(rows)
    if ratios:
        print("  matrix-vector GB/s of each format over q4_1's at the same shape:", file=out)
        for shape, by_fmt in ratios.items():
            print(f"    {shape:<10} " + "  ".join(f"{f} {r:.2f}" for f, r in by_fmt.items()), file=out)
    bw = numpy_read_bandwidth()
    print(f"  numpy read bandwidth on this host (a.sum() over 256 MiB): {bw / 1e9:.1f} GB/s", file=out)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"device": dev.info.name, "numpy_read_gbs": bw / 1e9, "rows": [asdict(r) for r in rows],
                       "ratio_to_q4_1": ratios}, f, indent=1)
    return rows


def ratios_to_q4_1(rows: list[Row]) -> dict[str, dict[str, float]]:
    """{shape: {format: its GB/s / q4_1's}} over the `matvec FMT RxC` rows (issue target: >= 0.8)."""
    gbs: dict[str, dict[str, float]] = {}
    for r in rows:
        parts = r.name.split()
        if len(parts) == 3 and parts[0] == "matvec" and parts[1] in KQ_COMPARE:
            gbs.setdefault(parts[2], {})[parts[1]] = r.gbs
    return {shape: {f: g / by["q4_1"] for f, g in by.items() if f != "q4_1"}
            for shape, by in gbs.items() if by.get("q4_1", 0) > 0 and len(by) > 1}
