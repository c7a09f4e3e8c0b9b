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


@bench("sync point (1-element dependent chain)")
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


def run_kernel_bench(dev: Device, out, quick: bool = False, json_path: str | None = None) -> list[Row]:
    reps = 16 if quick else 64
    repeats = 5 if quick else 15
    print(f"kernel benchmark on [{dev.index}] {dev.info.name} ({dev.info.type}); "
          f"LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS', '(default)')}; {reps} dispatches per program, "
          f"median of {repeats} replays", file=out)
    print(f"  {'kernel':<46} {'µs/disp':>9} {'GB/s':>7} {'GFLOP/s':>8} {'numpy µs':>9} {'spread':>7}", file=out)
    rows = []
    for name, fn in BENCHES:
        prog, nbytes, flops, np_fn = fn(dev, reps)
        t, spread = median_time(prog.run, repeats)
        per = t / max(1, prog.n_dispatches)
        np_us = median_time(np_fn, repeats)[0] * 1e6 if np_fn else None
        row = Row(name, per * 1e6, nbytes / per / 1e9, flops / per / 1e9, np_us, spread)
        rows.append(row)
        np_txt = f"{np_us:9.1f}" if np_us is not None else f"{'-':>9}"
        print(f"  {name:<46} {row.us:9.1f} {row.gbs:7.2f} {row.gflops:8.2f} {np_txt} {spread:7.0%}", file=out)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"device": dev.info.name, "rows": [asdict(r) for r in rows]}, f, indent=1)
    return rows
