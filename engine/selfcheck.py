"""Run every kernel once on the selected device against its numpy twin; print pass/fail and timings.

This is the quick answer to "does vkharp work on my GPU?": small model-like shapes, one case per
shader variant family, each compared to engine.reference with the tolerance its precision allows.
(The test suite sweeps sizes and work-group shapes; this only proves the device runs every kernel.)
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import ops, reference
from .device import Device

CASES: list[tuple[str, float, Callable]] = []


def case(name: str, tol: float):
    """Register fn(dev, rng) -> (program, read_result: () -> array, want). tol: max relative error."""
    def deco(fn):
        CASES.append((name, tol, fn))
        return fn
    return deco


@dataclass
class Result:
    name: str
    ok: bool
    err: float
    tol: float
    us: float
    note: str = ""


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@case("fill_u32", 0.0)
def _fill(dev, rng):
    out = dev.buffer(1001, np.uint32)
    rec = dev.recorder()
    ops.fill_u32(rec, out, value=12345)
    return rec.finish(), out.read, reference.fill_u32(1001, value=12345)


@case("chain_step x64 (sync points)", 0.0)
def _chain(dev, rng):
    x0 = rng.integers(0, 2**32, 4099, dtype=np.uint32)
    a, b = dev.buffer(x0), dev.buffer(4099, np.uint32)
    rec = dev.recorder()
    want = x0
    for i in range(64):
        src, dst = (a, b) if i % 2 == 0 else (b, a)
        ops.chain_step(rec, dst, src, stride=7919 + i)
        want = reference.chain_step(want, stride=7919 + i)
    return rec.finish(), a.read, want  # compared after exactly one run (timing replays come after)


@case("rmsnorm 5x576", 1e-5)
def _rmsnorm(dev, rng):
    x, w = _rand(rng, 5, 576), _rand(rng, 576)
    out = dev.buffer((5, 576))
    rec = dev.recorder()
    ops.rmsnorm(rec, out, dev.buffer(x), dev.buffer(w, kind="const"), eps=1e-5)
    return rec.finish(), lambda: out.read().reshape(5, 576), reference.rmsnorm(x, w, eps=1e-5)


@case("layernorm 5x640", 1e-5)
def _layernorm(dev, rng):
    x, w, b = _rand(rng, 5, 640), _rand(rng, 640), _rand(rng, 640)
    out = dev.buffer((5, 640))
    rec = dev.recorder()
    ops.layernorm(rec, out, dev.buffer(x), dev.buffer(w, kind="const"), dev.buffer(b, kind="const"), eps=1e-5)
    return rec.finish(), lambda: out.read().reshape(5, 640), reference.layernorm(x, w, b, eps=1e-5)


def _max_rel(got, want) -> float:
    got = np.asarray(got, np.float64).reshape(np.shape(want))
    want = np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def run_selfcheck(dev: Device, out, repeats: int = 20) -> bool:
    rng = np.random.default_rng(0)
    results = []
    for name, tol, fn in CASES:
        try:
            prog, read, want = fn(dev, rng)
            prog.run()
            err = _max_rel(read(), want)
            t = time.perf_counter()
            for _ in range(repeats):
                prog.run()
            us = (time.perf_counter() - t) / repeats * 1e6 / max(1, prog.n_dispatches)
            results.append(Result(name, err <= tol, err, tol, us))
        except Exception as exc:  # report and go on: one broken kernel must not hide the others
            results.append(Result(name, False, float("nan"), tol, float("nan"), f"{type(exc).__name__}: {exc}"))
            if out is not None and getattr(out, "isatty", lambda: False)():
                traceback.print_exc()
    width = max(len(r.name) for r in results)
    for r in results:
        status = "PASS" if r.ok else "FAIL"
        print(f"  {status}  {r.name:<{width}}  max rel err {r.err:.1e} (tol {r.tol:.0e})  "
              f"{r.us:8.1f} µs/dispatch {r.note}", file=out)
    n_ok = sum(r.ok for r in results)
    print(f"{n_ok}/{len(results)} kernels passed", file=out)
    return n_ok == len(results)
