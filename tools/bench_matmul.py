#!/usr/bin/env python3
"""Speed of matvec (decode) and matmul (prefill) per weight format and shape, next to numpy.

For each (format, shape) it records one program of many dispatches of the same kernel, replays it
many times and reports the median time per dispatch (so per-replay overhead is amortised), the
weight bytes read per second (the number that matters for decode) and GFLOP/s; then numpy's
float32 product on the decoded weights and a plain memory-read bandwidth (`w.sum()` over a large
array) for scale. Lavapipe reads LP_NUM_THREADS when the device opens, so `--threads both` runs
each mode in its own subprocess: `0` (no worker threads: ~1 us per dispatch, one core) and
`default` (worker threads: ~55 us per dispatch, all cores).

  python tools/bench_matmul.py                         # the standard table
  python tools/bench_matmul.py --formats q4_1 --shapes 4096x4096 --threads 0
  python tools/bench_matmul.py --tiling 4,8,1,64,1     # force a Tiling(run, CL, RL, RPL, TN)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_SHAPES = ["576x576", "1536x576", "576x1536", "4096x4096", "49152x576"]
DEFAULT_FORMATS = ["f32", "f16", "q8_0", "q4_0", "q4_1"]
PREFILL = [("576x576", 64), ("1536x576", 64)]


def _shape(text: str) -> tuple[int, int]:
    rows, cols = text.lower().split("x")
    return int(rows), int(cols)


def numpy_reference(rows: int, cols: int, ntok: int, reps: int) -> dict:
    """float32 product on already-decoded weights (what numpy would do with a dense copy)."""
    from engine.kernel_bench import median_time
    rng = np.random.default_rng(0)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    x = rng.standard_normal((ntok, cols)).astype(np.float32)
    fn = (lambda: w.dot(x[0])) if ntok == 1 else (lambda: x.dot(w.T))
    dt, _ = median_time(fn, reps, warmup=1)
    return {"us": dt * 1e6, "gbs": w.nbytes / dt / 1e9, "gflops": 2 * ntok * rows * cols / dt / 1e9}


def read_bandwidth(mbytes: int = 256, reps: int = 5) -> float:
    from engine.kernel_bench import numpy_read_bandwidth
    return numpy_read_bandwidth(mbytes << 20) / 1e9   # GB/s


def bench_kernel(device, fmt: str, rows: int, cols: int, ntok: int, tiling, target_s: float, reps: int) -> dict:
    from engine import quant
    from engine.ops.matmul import choose_tiling, matmul, matvec
    from engine.weights import upload_weight

    rng = np.random.default_rng(1)
    packed = quant.quantize(rng.standard_normal((rows, cols)).astype(np.float32), fmt)
    weight = upload_weight(device, packed, f"{fmt}_{rows}x{cols}")
    x = device.buffer(rng.standard_normal((ntok, cols)).astype(np.float32), name="x")
    out = device.buffer((ntok, rows), name="out")
    op = matvec if ntok == 1 else matmul
    t = tiling or choose_tiling(device.info, fmt, weight.parts[0].rows, cols, ntok)

    def program(k):
        rec = device.recorder()
        for _ in range(k):
            op(rec, out, weight, x, None, tiling=tiling)
        return rec.finish()

    t0 = time.perf_counter()
    one = program(1)
    one.run()                                    # compiles the pipeline (cached by Mesa afterwards)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    one.run()
    single = time.perf_counter() - t0
    k = int(max(4, min(200, target_s / max(single, 1e-6))))
    prog = program(k)
    prog.run()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        prog.run()
        ts.append((time.perf_counter() - t0) / k)
    dt = float(np.median(ts))
    return {"fmt": fmt, "rows": rows, "cols": cols, "ntok": ntok, "tiling": str(t), "parts": len(weight.parts),
            "dispatches": k, "us": dt * 1e6, "us_min": min(ts) * 1e6, "gbs": packed.nbytes / dt / 1e9,
            "gflops": 2 * ntok * rows * cols / dt / 1e9, "compile_s": compile_s}


def run_mode(args) -> list[dict]:
    from engine.device import Device
    from engine.ops.matmul import Tiling

    device = Device()
    tiling = Tiling(*[int(v) for v in args.tiling.split(",")]) if args.tiling else None
    jobs = [(f, s, 1) for s in args.shapes for f in args.formats]
    if not args.no_prefill:
        jobs += [(f, s, n) for s, n in (PREFILL if args.prefill is None else [(p, args.ntok) for p in args.prefill])
                 for f in args.formats]
    results = []
    for fmt, shape, ntok in jobs:
        rows, cols = _shape(shape)
        r = bench_kernel(device, fmt, rows, cols, ntok, tiling, args.target, args.reps)
        r["threads"] = os.environ.get("LP_NUM_THREADS", "default")
        results.append(r)
        print(json.dumps(r), flush=True)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--formats", nargs="+", default=DEFAULT_FORMATS)
    ap.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="ROWSxCOLS for matvec")
    ap.add_argument("--prefill", nargs="+", default=None, help="ROWSxCOLS for matmul (default 576x576 1536x576)")
    ap.add_argument("--ntok", type=int, default=64, help="tokens for --prefill shapes")
    ap.add_argument("--no-prefill", action="store_true")
    ap.add_argument("--threads", choices=["0", "default", "both"], default="both",
                    help="LP_NUM_THREADS for lavapipe (each mode runs in its own process)")
    ap.add_argument("--tiling", default=None, help="run,col_lanes,row_lanes,rows_per_lane,tokens[,rows_per_sum]")
    ap.add_argument("--target", type=float, default=0.05, help="seconds per replay (sets dispatches per program)")
    ap.add_argument("--reps", type=int, default=15, help="replays per measurement (median reported)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        run_mode(args)
        return
    modes = ["0", "default"] if args.threads == "both" else [args.threads]
    results = []
    for mode in modes:
        env = dict(os.environ)
        env.pop("LP_NUM_THREADS", None)
        if mode == "0":
            env["LP_NUM_THREADS"] = "0"
        argv = [a for a in sys.argv[1:]]
        proc = subprocess.run([sys.executable, __file__, *argv, "--worker"], env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"benchmark worker (LP_NUM_THREADS={mode}) failed:\n{proc.stdout}{proc.stderr}")
        results += [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]

    bw = read_bandwidth()
    print(f"numpy read bandwidth (w.sum() over 256 MiB float32): {bw:.1f} GB/s\n")
    hdr = (f"{'format':6s} {'shape':>10s} {'N':>3s} {'threads':>7s} {'us/disp':>9s} {'GB/s':>6s} {'%read':>6s} "
           f"{'GFLOP/s':>8s} | {'numpy us':>9s} {'GB/s':>6s} {'GFLOP/s':>8s} | tiling (compile s)")
    print(hdr)
    print("-" * len(hdr))
    np_cache = {}
    for r in results:
        key = (r["rows"], r["cols"], r["ntok"])
        if key not in np_cache:
            np_cache[key] = numpy_reference(*key, reps=args.reps)
        n = np_cache[key]
        print(f"{r['fmt']:6s} {r['rows']:>5d}x{r['cols']:<5d}{r['ntok']:>3d} {r['threads']:>7s} {r['us']:>9.1f} "
              f"{r['gbs']:>6.2f} {100 * r['gbs'] / bw:>5.1f}% {r['gflops']:>8.2f} | {n['us']:>9.1f} {n['gbs']:>6.2f} "
              f"{n['gflops']:>8.2f} | {r['tiling']} ({r['compile_s']:.1f})")


if __name__ == "__main__":
    main()
