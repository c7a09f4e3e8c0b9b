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


@case("chain_step x64 (barriers)", 0.0)
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


def _matrix_case(fmt: str, rows: int, cols: int, ntok: int):
    def fn(dev, rng):
        from .ops.matmul import matmul, matvec
        from .quant import quantize
        from .reference.matmul import matmul as ref_matmul, matvec as ref_matvec
        from .weights import upload_weight
        packed = quantize(_rand(rng, rows, cols), fmt)
        w = upload_weight(dev, packed, f"w_{fmt}")
        x = _rand(rng, ntok, cols)
        out = dev.buffer((ntok, rows))
        rec = dev.recorder()
        if ntok == 1:
            matvec(rec, out, w, dev.buffer(x.reshape(-1)))
            want = ref_matvec(packed, x.reshape(-1))
        else:
            matmul(rec, out, w, dev.buffer(x))
            want = ref_matmul(packed, x)
        return rec.finish(), lambda: out.read().reshape(want.shape), want
    return fn


for _fmt in ("f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl"):
    case(f"matvec {_fmt} 1536x576", 1e-4)(_matrix_case(_fmt, 1536, 576, 1))
    case(f"matmul {_fmt} 17x576x1536", 1e-4)(_matrix_case(_fmt, 576, 1536, 17))
for _fmt in ("q4_k", "q5_k", "q6_k", "iq4_xs", "q2_k", "q3_k"):   # whole 256-column super-blocks
    case(f"matvec {_fmt} 576x1536", 1e-4)(_matrix_case(_fmt, 576, 1536, 1))
    case(f"matmul {_fmt} 17x576x1536", 1e-4)(_matrix_case(_fmt, 576, 1536, 17))


def _matmul_t_case(fmt: str, rows: int, cols: int, ntok: int):
    def fn(dev, rng):
        from .quant import quantize
        from .weights import upload_weight
        packed = quantize(_rand(rng, rows, cols), fmt)
        w = upload_weight(dev, packed, f"w_{fmt}")
        dy = _rand(rng, ntok, rows)
        dx = dev.buffer((ntok, cols))
        rec = dev.recorder()
        ops.matmul_t(rec, dx, w, dev.buffer(dy))
        return rec.finish(), lambda: dx.read().reshape(ntok, cols), reference.matmul_t(packed, dy)
    return fn


for _fmt in ("f16", "q8_0", "q4_1"):   # training's dy·W through frozen weights (issue 14)
    case(f"matmul_t {_fmt} 17x1536 · 1536x576", 1e-4)(_matmul_t_case(_fmt, 1536, 576, 17))
case("matmul_t q6_k 17x576 · 576x1536", 1e-4)(_matmul_t_case("q6_k", 576, 1536, 17))   # 256-column super-blocks


@case("grad_weight 16x576 over 17 tokens", 1e-5)
def _grad_weight(dev, rng):
    dy, x = _rand(rng, 17, 16), _rand(rng, 17, 576)
    dw = dev.buffer((16, 576))
    rec = dev.recorder()
    ops.grad_weight(rec, dw, dev.buffer(dy), dev.buffer(x))
    return rec.finish(), lambda: dw.read().reshape(16, 576), reference.grad_weight(dy, x)


@case("adamw 4099 with threshold", 1e-5)
def _adamw(dev, rng):
    p, g, m, v = _rand(rng, 4099), _rand(rng, 4099), _rand(rng, 4099), np.abs(_rand(rng, 4099))
    h = ops.pack_hyper(1e-3, 0.9, 0.999, 1e-8, 0.01, 0.5, 7)
    bufs = [dev.buffer(a) for a in (p, g, m, v)]
    counts = dev.buffer(2, np.uint32)
    rec = dev.recorder()
    ops.zero_counts(rec, counts)
    ops.adamw(rec, *bufs, dev.buffer(h, kind="param"), counts)
    return rec.finish(), bufs[0].read, reference.adamw(p, g, m, v, h)[0]


@case("sum_squares 100003", 1e-5)
def _sum_squares(dev, rng):
    x = _rand(rng, 100003)
    g = ops.sum_squares_groups(dev, x.size)
    out = dev.buffer(g)
    rec = dev.recorder()
    ops.sum_squares(rec, out, dev.buffer(x))
    return rec.finish(), out.read, reference.sum_squares(x, groups=g)


@case("embed q8_0 + HARP dropout", 1e-6)
def _embed(dev, rng):
    from .ops.embed import embed
    from .params import pack_step
    from .quant import quantize
    from .reference.embed import embed as ref_embed
    from .weights import upload_weight
    table = quantize(_rand(rng, 1000, 576), "q8_0")
    ids = rng.integers(0, 1000, 7).astype(np.uint32)
    step = pack_step(pos=5, n_tokens=7, seed=42, drop_on=1, drop_p=0.2)
    out = dev.buffer((7, 576))
    rec = dev.recorder()
    embed(rec, out, upload_weight(dev, table, "table"), dev.buffer(ids), dev.buffer(step), dropout=True)
    return rec.finish(), lambda: out.read().reshape(7, 576), ref_embed(table, ids, step, dropout=True)


def _gated_case(name: str, width: int):
    def fn(dev, rng):
        from .ops import activation as op
        from .reference import activation as ref
        g, u = _rand(rng, 7, width), _rand(rng, 7, width)
        out = dev.buffer((7, width))
        rec = dev.recorder()
        getattr(op, name)(rec, out, dev.buffer(g), dev.buffer(u))
        return rec.finish(), lambda: out.read().reshape(7, width), getattr(ref, name)(g, u)
    return fn


case("swiglu 7x1536", 1e-5)(_gated_case("swiglu", 1536))
case("geglu 7x2048", 1e-4)(_gated_case("geglu", 2048))


@case("add 7x576", 0.0)
def _add(dev, rng):
    from .ops.elementwise import add
    a, b = _rand(rng, 7, 576), _rand(rng, 7, 576)
    out = dev.buffer((7, 576))
    rec = dev.recorder()
    add(rec, out, dev.buffer(a), dev.buffer(b))
    return rec.finish(), lambda: out.read().reshape(7, 576), a + b


@case("softcap 30, 1x1001 logits in place", 1e-6)
def _softcap(dev, rng):
    from .ops.elementwise import softcap
    x = _rand(rng, 1, 1001) * 40.0
    xb = dev.buffer(x)
    rec = dev.recorder()
    softcap(rec, xb, xb, cap=30.0)
    return rec.finish(), lambda: xb.read().reshape(x.shape), reference.elementwise.softcap(x, cap=30.0)


@case("rope half 9+3 heads x64 at 300", 1e-5)
def _rope(dev, rng):
    from .ops.rope import rope
    from .params import pack_step
    from .reference.rope import rope as ref
    q, k = _rand(rng, 3, 9, 64), _rand(rng, 3, 3, 64)
    inv = (1.0 / (1e5 ** (np.arange(0, 64, 2) / 64))).astype(np.float32)
    qb, kb = dev.buffer(q), dev.buffer(k)
    rec = dev.recorder()
    rope(rec, qb, kb, dev.buffer(inv, kind="const"), dev.buffer(pack_step(pos=300, n_tokens=3)))
    want_q, _ = ref(q, k, inv, 300, 3)
    return rec.finish(), lambda: qb.read().reshape(q.shape), want_q


def _caches(dev, rng, kv: str, ctx: int = 512):
    """Random K and V caches [3 kv heads, ctx, 64] as arrays for the twin and as device buffers (f16:
    halves, packed two to a word)."""
    kc, vc = _rand(rng, 3, ctx, 64), _rand(rng, 3, ctx, 64)
    if kv == "f16":
        kc, vc = kc.astype(np.float16), vc.astype(np.float16)
        return kc, vc, dev.buffer(kc.view(np.uint32)), dev.buffer(vc.view(np.uint32))
    return kc, vc, dev.buffer(kc), dev.buffer(vc)


def _attention_case(n: int, variant: str, kv: str):
    def fn(dev, rng):
        from .ops.attention import attention
        from .params import pack_step
        from .reference.attention import attention as ref
        pos = 300
        q, k, v = _rand(rng, n, 9, 64) * 3, _rand(rng, n, 3, 64), _rand(rng, n, 3, 64)
        kc, vc, kcb, vcb = _caches(dev, rng, kv)
        out = dev.buffer((n, 9, 64))
        rec = dev.recorder()
        attention(rec, out, dev.buffer(q), dev.buffer(k), dev.buffer(v), kcb, vcb,
                  dev.buffer(pack_step(pos=pos, n_tokens=n)), n_heads=9, n_kv_heads=3, head_dim=64, scale=0.125,
                  variant=variant)
        want = ref(q, k, v, kc, vc, pos, n, n_heads=9, n_kv_heads=3, head_dim=64, scale=0.125)
        return rec.finish(), lambda: out.read().reshape(want.shape), want
    return fn


# f16 caches are the default (engine/kv_cache.py); f32 where a model's head dim is not a multiple of 8
for _kv in ("f16", "f32"):
    case(f"attention decode 9/3 heads at 300, {_kv} cache", 1e-4)(_attention_case(1, "decode", _kv))
    # the prefill variant by name: 16 rows alone would choose decode; on CPU devices its shuffle layout
    case(f"attention prefill 16 tokens at 300, {_kv} cache", 1e-4)(_attention_case(16, "prefill", _kv))


@case("attention decode with RoPE and the KV append, at 300, f16 cache", 1e-4)
def _attention_rope(dev, rng):
    """The decode layer's fused form: q and k go in unrotated (twins: rope, then attention)."""
    from .ops.attention import attention
    from .params import pack_step
    from .reference.attention import attention as ref
    from .reference.rope import rope as ref_rope
    pos = 300
    q, k, v = _rand(rng, 1, 9, 64) * 3, _rand(rng, 1, 3, 64), _rand(rng, 1, 3, 64)
    kc, vc, kcb, vcb = _caches(dev, rng, "f16")      # the default cache: its halves' stores too
    inv = (1.0 / (1e5 ** (np.arange(0, 64, 2) / 64))).astype(np.float32)
    out = dev.buffer((1, 9, 64))
    rec = dev.recorder()
    attention(rec, out, dev.buffer(q), dev.buffer(k), dev.buffer(v), kcb, vcb,
              dev.buffer(pack_step(pos=pos, n_tokens=1)), n_heads=9, n_kv_heads=3, head_dim=64, scale=0.125,
              rope=(dev.buffer(inv, kind="const"), 0, 1.0))
    rq, rk = ref_rope(q, k, inv, pos, 1)
    want = ref(rq, rk, v, kc, vc, pos, 1, n_heads=9, n_kv_heads=3, head_dim=64, scale=0.125)
    return rec.finish(), lambda: out.read().reshape(want.shape), want


@case("sample top-k/top-p/min-p V=49152", 0.0)
def _sample(dev, rng):
    from .ops.sample import sample
    from .reference.sample import sample as ref
    from .sampling import OUT_WORDS, SamplerSettings, pack_sample_params
    logits = (_rand(rng, 49152) * 3).astype(np.float32)
    words = pack_sample_params(SamplerSettings(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05), u=0.37)
    out = dev.buffer(OUT_WORDS, np.uint32)
    rec = dev.recorder()
    sample(rec, out, dev.buffer(logits), dev.buffer(words), dev.buffer(np.zeros(1, np.uint32)), vocab=49152)
    want = ref(logits, words)
    return rec.finish(), lambda: np.array([out.read()[0]], np.float64), np.array([want.token], np.float64)


@case("local1d kernel 5, 6x301 -> 301", 2e-5)
def _local1d(dev, rng):
    from .ops.local1d import local1d
    from .reference.local1d import local1d as ref
    x, w = _rand(rng, 6, 301), _rand(rng, 301, 5)
    out = dev.buffer((6, 301))
    rec = dev.recorder()
    local1d(rec, out, dev.buffer(x), dev.buffer(w), kernel=5)
    return rec.finish(), lambda: out.read().reshape(6, 301), ref(x, w, kernel=5)


@case("local1d_swiglu + local1d_residual 6x576 -> 2304 -> 576", 1e-4)
def _local1d_mlp(dev, rng):
    from .ops.local1d import local1d, local1d_swiglu
    from .reference.local1d import local1d as ref, local1d_swiglu as ref_glu
    x, base = _rand(rng, 6, 576), _rand(rng, 6, 576)
    wg, wu, wd = _rand(rng, 2, 2304, 8) / 3, _rand(rng, 2, 2304, 8) / 3, _rand(rng, 2, 576, 4) / 2
    m, out = dev.buffer((6, 2304)), dev.buffer(base)
    rec = dev.recorder()
    local1d_swiglu(rec, m, dev.buffer(x), dev.buffer(wg), dev.buffer(wu), kernel=8, units=2304, layer=1)
    local1d(rec, out, m, dev.buffer(wd), kernel=4, units=576, layer=1, residual=True)
    want = base + ref(ref_glu(x, wg[1], wu[1], kernel=8, units=2304), wd[1], kernel=4, units=576)
    return rec.finish(), lambda: out.read().reshape(6, 576), want


@case("neg_abs 1x1001 logits in place (target-only)", 0.0)
def _neg_abs(dev, rng):
    from .ops.elementwise import neg_abs
    x = _rand(rng, 1, 1001)
    xb = dev.buffer(x)
    rec = dev.recorder()
    neg_abs(rec, xb, xb)
    return rec.finish(), lambda: xb.read().reshape(x.shape), reference.elementwise.neg_abs(x)


@case("local1d backward dx+dw kernel 5, 6x301", 2e-5)
def _local1d_back(dev, rng):
    from .ops.local1d import local1d_back_w, local1d_back_x
    from .reference.local1d import local1d_back_w as ref_w, local1d_back_x as ref_x
    x, w, dy = _rand(rng, 6, 301), _rand(rng, 301, 5), _rand(rng, 6, 301)
    dx, dw = dev.buffer((6, 301)), dev.buffer((301, 5))
    rec = dev.recorder()
    local1d_back_x(rec, dx, dev.buffer(dy), dev.buffer(w), kernel=5)
    local1d_back_w(rec, dw, dev.buffer(dy), dev.buffer(x), kernel=5)
    want = np.concatenate([ref_x(dy, w, kernel=5, in_width=301).ravel(), ref_w(dy, x, kernel=5).ravel()])
    return rec.finish(), lambda: np.concatenate([dx.read(), dw.read()]), want


@case("loss first-mismatch + position-edit 9x4099", 2e-5)
def _loss(dev, rng):
    from .ops.loss import loss
    from .reference.loss import EDIT_ARGMAX, STAT_WORDS, loss as ref
    z, b = _rand(rng, 9, 4099) * 3, _rand(rng, 9, 4099) * 3
    y = rng.integers(0, 4099, 9).astype(np.uint32)
    w = np.ones(9, np.float32)
    ed = np.full(9, EDIT_ARGMAX, np.uint32)
    outs = [dev.buffer((9, 4099)) for _ in range(2)]
    rec = dev.recorder()
    for out, rule in zip(outs, ("first-mismatch", "position-edit")):
        loss(rec, out, dev.buffer(STAT_WORDS, np.uint32), dev.buffer(z), dev.buffer(y), dev.buffer(w), rule=rule,
             base=dev.buffer(b), edits=dev.buffer(ed))
    want = np.concatenate([ref(z, y, w, rule=r, base=b, edits=ed)[0].ravel() for r in ("first-mismatch", "position-edit")])
    return rec.finish(), lambda: np.concatenate([o.read() for o in outs]), want


# -- training (issue 14): the layers' backward, at SmolLM2-like head shapes --------------------------------
@case("rmsnorm_back 7x576 (+ dweight)", 1e-5)
def _rmsnorm_back(dev, rng):
    x, w, dy = _rand(rng, 7, 576), _rand(rng, 576), _rand(rng, 7, 576)
    dx, dw = dev.buffer((7, 576)), dev.buffer(576)
    rec = dev.recorder()
    ops.rmsnorm_back(rec, dx, dev.buffer(x), dev.buffer(w, kind="const"), dev.buffer(dy), eps=1e-5, dweight=dw)
    want_dx, want_dw = reference.rmsnorm_back(x, w, dy, eps=1e-5)
    return (rec.finish(), lambda: np.concatenate([dx.read(), dw.read()]),
            np.concatenate([want_dx.reshape(-1), want_dw]))


@case("rope_back half 9+3 heads x64 at 0", 1e-5)
def _rope_back(dev, rng):
    from .params import pack_step
    dq, dk = _rand(rng, 7, 9, 64), _rand(rng, 7, 3, 64)
    inv = (1.0 / (1e5 ** (np.arange(0, 64, 2) / 64))).astype(np.float32)
    qb, kb = dev.buffer(dq), dev.buffer(dk)
    rec = dev.recorder()
    ops.rope_back(rec, qb, kb, dev.buffer(inv, kind="const"), dev.buffer(pack_step(pos=0, n_tokens=7)))
    want_q, _ = reference.rope_back(dq, dk, inv, 0, 7)
    return rec.finish(), lambda: qb.read().reshape(dq.shape), want_q


@case("swiglu_back 7x1536", 1e-5)
def _swiglu_back(dev, rng):
    g, u, d = _rand(rng, 7, 1536), _rand(rng, 7, 1536), _rand(rng, 7, 1536)
    dg, du = dev.buffer((7, 1536)), dev.buffer((7, 1536))
    rec = dev.recorder()
    ops.glu_back(rec, dg, du, dev.buffer(g), dev.buffer(u), dev.buffer(d), act="silu")
    want = reference.glu_back(g, u, d, act="silu")
    return rec.finish(), lambda: np.stack([dg.read(), du.read()]), np.stack([w.reshape(-1) for w in want])


@case("attention_seq + back 33 tokens 9/3 heads", 5e-5)
def _attention_seq(dev, rng):
    t, kw = 33, dict(n_heads=9, n_kv_heads=3, head_dim=64, scale=0.125)
    q, k, v, do = _rand(rng, t, 9, 64) * 3, _rand(rng, t, 3, 64), _rand(rng, t, 3, 64), _rand(rng, t, 9, 64)
    qb, kb, vb = dev.buffer(q), dev.buffer(k), dev.buffer(v)
    out, lse = dev.buffer((t, 9, 64)), dev.buffer((t, 9))
    dq, dk, dv = dev.buffer((t, 9, 64)), dev.buffer((t, 3, 64)), dev.buffer((t, 3, 64))
    rec = dev.recorder()
    ops.attention_seq(rec, out, lse, qb, kb, vb, **kw)
    ops.attention_back(rec, dq, dk, dv, qb, kb, vb, out, lse, dev.buffer(do), **kw)
    o, l = reference.attention_seq(q, k, v, **kw)
    want = reference.attention_back(q, k, v, o, l, do, **kw)
    return (rec.finish(), lambda: np.concatenate([b.read() for b in (out, dq, dk, dv)]),
            np.concatenate([a.reshape(-1) for a in (o, *want)]))


@case("softcap_back 30, embed_back 7 ids of 1000", 1e-6)
def _softcap_embed_back(dev, rng):
    y = np.tanh(_rand(rng, 1001)).astype(np.float32) * 30.0
    dy, ids, dx = _rand(rng, 1001), rng.integers(0, 1000, 7).astype(np.uint32), _rand(rng, 7, 64)
    dxb, dtab = dev.buffer(1001), dev.buffer((1000, 64))
    rec = dev.recorder()
    ops.softcap_back(rec, dxb, dev.buffer(y), dev.buffer(dy), cap=30.0)
    ops.embed_back(rec, dtab, dev.buffer(ids), dev.buffer(dx))
    want = np.concatenate([reference.softcap_back(y, dy, cap=30.0), reference.embed_back(ids, dx, vocab=1000).reshape(-1)])
    return rec.finish(), lambda: np.concatenate([dxb.read(), dtab.read()]), want



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
