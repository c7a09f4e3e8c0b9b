#!/usr/bin/env python3
"""Matrix-vector speed of a few weight formats at one shape, in interleaved rounds, as ratios.

`vkharp bench --kernels` times every kernel of its table in turn, so on a shared CPU host a slow
moment can hit one format and not the next (its small shapes spread by 30-60 % between rounds).
This tool times only the formats named, alternating them round after round on the same random
matrix and activations, and prints each one's median time, the GB/s of its own bytes and the ratio
to the first format's GB/s (issue target for the k-quants: >= 0.8 of q4_1).

  python tools/format_ab.py 640x2048 q4_1 q4_k q5_k q6_k q5_0 q5_1
  python tools/format_ab.py 4096x4096 q4_1 q6_k --rounds 15 --dispatches 20
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def measure(shape: str, formats: list[str], rounds: int, dispatches: int, device=None) -> list[dict]:
    """[{format, us, gbs, ratio}] in the order given; ratio = GB/s over the first format's."""
    from engine.device import Device
    from engine.ops.matmul import matvec
    from engine.quant import quantize
    from engine.weights import upload_weight

    rows, cols = (int(v) for v in shape.lower().split("x"))
    dev = device or Device()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, cols)).astype(np.float32) * 0.05
    x = dev.buffer(rng.standard_normal(cols).astype(np.float32))
    progs = []
    for fmt in dict.fromkeys(formats):
        packed = quantize(a, fmt)
        w = upload_weight(dev, packed, f"w_{fmt}")
        out = dev.buffer(rows)
        rec = dev.recorder()
        with rec.parallel():    # the same output each time: one pipeline, no barriers in between
            for _ in range(dispatches):
                matvec(rec, out, w, x)
        prog = rec.finish()
        prog.run()              # compile and warm up outside the rounds
        progs.append((fmt, prog, packed.nbytes))
    times: dict[str, list[float]] = {fmt: [] for fmt, _, _ in progs}
    for _ in range(rounds):
        for fmt, prog, _ in progs:
            t = time.perf_counter()
            prog.run()
            times[fmt].append((time.perf_counter() - t) / dispatches)
    rows_out, base = [], None
    for fmt, _, nbytes in progs:
        sec = float(np.median(times[fmt]))
        gbs = nbytes / sec / 1e9
        base = base or gbs
        rows_out.append({"format": fmt, "us": sec * 1e6, "gbs": gbs, "ratio": gbs / base})
    return rows_out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shape", help="ROWSxCOLS")
    ap.add_argument("formats", nargs="+", help="weight formats; ratios are to the first")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--dispatches", type=int, default=10, help="dispatches per timed replay")
    args = ap.parse_args(argv)
    print(f"matvec {args.shape}, median of {args.rounds} interleaved rounds of {args.dispatches} dispatches")
    for r in measure(args.shape, args.formats, args.rounds, args.dispatches):
        print(f"  {r['format']:>7}: {r['us']:8.1f} us  {r['gbs']:6.2f} GB/s  ratio {r['ratio']:.2f}")


if __name__ == "__main__":
    main()
