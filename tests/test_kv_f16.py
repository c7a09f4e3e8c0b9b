"""f16 KV caches (the default): shaders/attention.comp and shaders/kv_append.comp with KV16 = 1 against
engine/reference/attention.py, which reads the same halves (so the tolerances are test_attention's:
only the f32 arithmetic differs), and the errors of a cache that cannot be f16."""
import numpy as np
import pytest

from engine.errors import DeviceLimitError, VkharpError
from engine.kv_cache import KVCache
from engine.ops.attention import attention, cache_dtype, kv_append, kv_cache_buffers
from engine.ops.rope import rope
from engine.params import pack_step
from engine.reference.attention import attention as ref_attention
from engine.reference.attention import attention_dual, cache_halves, kv_append_dual
from engine.reference.attention import kv_append as ref_kv_append
from engine.reference.rope import rope as ref_rope
from test_attention import CTX, Q_GAIN, TOL, _err
from util import rand

SHAPES = [(9, 3, 64), (4, 1, 48), (4, 2, 80)]   # SmolLM2's; D/4 = 12 and 20: pairs of vec4s, no single one
VARIANTS = {"decode": dict(variant="decode"), "split": dict(variant="decode", splits=3),
            "shfl": dict(variant="prefill", shuffle=True), "tile": dict(variant="prefill", shuffle=False)}


def halves(rng, *shape):
    return rand(rng, *shape).astype(np.float16)


def f16_buffer(device, x16):
    """A device f16 cache holding x16 (float16, last dim even): its u32 words."""
    return device.buffer(np.ascontiguousarray(x16).view(np.uint32))


@pytest.mark.parametrize("hq,hk,d", SHAPES)
@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("pos,n,window", [(0, 7, 0), (37, 5, 0), (300, 7, 0), (300, 7, 40)])
def test_attention_over_an_f16_cache_matches_twin(device, rng, hq, hk, d, name, pos, n, window):
    n_tok = 1 if name in ("decode", "split") else 7
    n = min(n, n_tok)
    q, k, v = rand(rng, n_tok, hq, d, scale=Q_GAIN), rand(rng, n_tok, hk, d), rand(rng, n_tok, hk, d)
    kc, vc = halves(rng, hk, CTX, d), halves(rng, hk, CTX, d)
    out, step = device.buffer((n_tok, hq, d)), device.buffer(pack_step(pos=pos, n_tokens=n))
    rec = device.recorder()
    attention(rec, out, *(device.buffer(x) for x in (q, k, v)), f16_buffer(device, kc), f16_buffer(device, vc), step,
              n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5, window=window, **VARIANTS[name])
    rec.finish().run()
    got = out.read().reshape(q.shape)
    want = ref_attention(q, k, v, kc, vc, pos, n, n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5,
                         window=window)
    assert _err(got, want, np.abs(v).max()) < TOL, (name, pos, n, window)


def test_kv_append_rounds_into_an_f16_cache(device, rng):
    hk, d, ctx = 3, 40, 40        # 120 halves a row: 60 words, not a multiple of the work group
    k, v = rand(rng, 7, hk, d), rand(rng, 7, hk, d)
    kc0, vc0 = halves(rng, hk, ctx, d), halves(rng, hk, ctx, d)
    for pos, n in [(3, 5), (37, 5), (0, 7)]:           # (37, 5): only rows 37..39 fit
        kc, vc = f16_buffer(device, kc0), f16_buffer(device, vc0)
        rec = device.recorder()
        kv_append(rec, kc, vc, device.buffer(k), device.buffer(v), device.buffer(pack_step(pos=pos, n_tokens=n)))
        rec.finish().run()
        want_k, want_v = ref_kv_append(kc0, vc0, k, v, pos, n)
        for got, want in ((cache_halves(kc.read(), hk, ctx, d), want_k), (cache_halves(vc.read(), hk, ctx, d), want_v)):
            # packHalf2x16's rounding is the device's: within one half ulp of numpy's nearest-even
            ulp = np.spacing(np.abs(want)).astype(np.float32)
            assert (np.abs(got.astype(np.float32) - want.astype(np.float32)) <= ulp).all()
            assert (got == want).mean() > 0.99            # and lavapipe rounds to nearest even too
        untouched = np.ones(ctx, bool)
        untouched[pos:pos + n] = False
        np.testing.assert_array_equal(cache_halves(kc.read(), hk, ctx, d)[:, untouched], kc0[:, untouched])


@pytest.mark.parametrize("hq,hk,d,rot", [(9, 3, 64, 64), (4, 1, 48, 32)])
@pytest.mark.parametrize("pos", [0, 37, 300])
def test_fused_rope_decode_appends_halves(device, rng, hq, hk, d, rot, pos):
    """The decode form's own key and value go to cache row pos as halves (its vec4 stores under KV16),
    and the row's attention uses them in f32 as the twin does."""
    q, k, v = rand(rng, 1, hq, d, scale=Q_GAIN), rand(rng, 1, hk, d), rand(rng, 1, hk, d)
    inv = (1.0 / 10000.0 ** (np.arange(0, rot, 2, dtype=np.float32) / rot)).astype(np.float32)[None]
    kc, vc = halves(rng, 2, hk, CTX, d), halves(rng, 2, hk, CTX, d)
    kb, vb = f16_buffer(device, kc), f16_buffer(device, vc)
    out, step = device.buffer((1, hq, d)), device.buffer(pack_step(pos=pos, n_tokens=1))
    rec = device.recorder()
    attention(rec, out, *(device.buffer(x) for x in (q, k, v)), kb, vb, step, n_heads=hq, n_kv_heads=hk, head_dim=d,
              scale=d ** -0.5, layer=1, rope=(device.buffer(inv, kind="const"), 0, 1.0))
    rec.finish().run()
    rq, rk = ref_rope(q, k, inv[0], pos, 1)
    want = ref_attention(rq, rk, v, kc[1], vc[1], pos, 1, n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5)
    assert _err(out.read().reshape(q.shape), want, np.abs(v).max()) < TOL
    want_k, want_v = ref_kv_append(kc[1], vc[1], rk, v, pos, 1)
    got_k = cache_halves(kb.read(), *kc.shape)
    got_v = cache_halves(vb.read(), *vc.shape)
    assert np.abs(got_k[1].astype(np.float32) - want_k).max() <= 2e-3 * np.abs(k).max()   # rotation + one half ulp
    np.testing.assert_array_equal(got_v[1], want_v)
    np.testing.assert_array_equal(got_k[0], kc[0])          # the other layer is left alone
    np.testing.assert_array_equal(np.delete(got_v[1], pos, 1), np.delete(vc[1], pos, 1))


@pytest.mark.parametrize("splits", [1, 3])
def test_two_stream_decode_over_f16_caches(device, rng, splits):
    hq, hk, d, pos = 9, 3, 64, 200
    q, k, v = rand(rng, 2, hq, d, scale=Q_GAIN), rand(rng, 2, hk, d), rand(rng, 2, hk, d)
    inv = (1.0 / 10000.0 ** (np.arange(0, d, 2, dtype=np.float32) / d)).astype(np.float32)[None]
    caches = [(halves(rng, hk, CTX, d), halves(rng, hk, CTX, d)) for _ in range(2)]
    cbufs = [(f16_buffer(device, a), f16_buffer(device, b)) for a, b in caches]
    out, step = device.buffer((2, hq, d)), device.buffer(pack_step(pos=pos, n_tokens=2))
    rec = device.recorder()
    attention(rec, out, *(device.buffer(x) for x in (q, k, v)), *cbufs[0], step, n_heads=hq, n_kv_heads=hk,
              head_dim=d, scale=d ** -0.5, second=cbufs[1], splits=splits,
              rope=(device.buffer(inv, kind="const"), 0, 1.0))
    rec.finish().run()
    rq, rk = ref_rope(q, k, inv[0], pos, 2, dual=True)
    want = attention_dual(rq, rk, v, caches, pos, n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5)
    assert _err(out.read().reshape(q.shape), want, np.abs(v).max()) < TOL
    for (kb, vb), (wk, wv) in zip(cbufs, kv_append_dual(caches, rk, v, pos)):
        np.testing.assert_array_equal(cache_halves(vb.read(), *wv.shape), wv)
        assert np.abs(cache_halves(kb.read(), *wk.shape).astype(np.float32) - wk).max() <= 2e-3 * np.abs(k).max()


def test_f16_caches_hold_half_the_bytes(device):
    f32 = KVCache(device, n_layers=3, n_kv_heads=2, head_dim=16, ctx=20, dtype="f32")
    f16 = KVCache(device, n_layers=3, n_kv_heads=2, head_dim=16, ctx=20, dtype="f16")
    assert f16.nbytes * 2 == f32.nbytes == 2 * 3 * 20 * 2 * 16 * 4
    assert cache_dtype(f16.k[0]) == "f16" and cache_dtype(f32.k[0]) == "f32"


def test_caches_that_cannot_be_f16_are_clear_errors(device, rng):
    with pytest.raises(VkharpError, match="head_dim a multiple of 8.*--kv-type f32"):
        kv_cache_buffers(device, 16, 2, 12, dtype="f16")
    with pytest.raises(VkharpError, match="unknown; use one of f16, f32"):
        kv_cache_buffers(device, 16, 2, 16, dtype="q8_0")
    with pytest.raises(DeviceLimitError, match=r"\(f16\).*at most"):
        kv_cache_buffers(device, 10 ** 8, 2, 64, dtype="f16")
    kc, vc = kv_cache_buffers(device, 16, 2, 16, dtype="f16")
    q, k = device.buffer(rand(rng, 3, 4, 16)), device.buffer(rand(rng, 3, 2, 16))
    step = device.buffer(pack_step(pos=0, n_tokens=3))
    inv = device.buffer(np.ones((1, 8), np.float32), kind="const")
    with pytest.raises(VkharpError, match="rope without append=, then kv_append"):
        rope(device.recorder(), q, k, inv, step, append=(k, kc, vc))
    f32c = kv_cache_buffers(device, 16, 2, 16)[1]
    with pytest.raises(VkharpError, match="K cache is f16 and the V cache f32"):
        kv_append(device.recorder(), kc, f32c, k, k, step)
    out = device.buffer((1, 4, 48))
    kc48, vc48 = kv_cache_buffers(device, 16, 1, 48, dtype="f16")
    one = [device.buffer(rand(rng, 1, 4, 48)), device.buffer(rand(rng, 1, 1, 48)), device.buffer(rand(rng, 1, 1, 48))]
    with pytest.raises(DeviceLimitError, match="team=4"):   # 3 vec4s a thread: halves come in pairs of vec4s
        attention(device.recorder(), out, *one, kc48, vc48, step, n_heads=4, n_kv_heads=1, head_dim=48, scale=1.0,
                  variant="decode", team=4)


def test_models_take_f16_where_the_head_dim_allows_and_refuse_it_clearly_elsewhere(device, tmp_path):
    pytest.importorskip("torch")
    from checkpoints import make_hf_checkpoint
    from engine.convert import convert
    from engine.model import Model
    for name, over, default in (("hd16", {}, "f16"), ("hd12", dict(hidden_size=48, num_attention_heads=4,
                                                                    num_key_value_heads=2), "f32")):
        dst = tmp_path / name / "converted"
        convert(make_hf_checkpoint(tmp_path / name, "llama", **over), dst, dtype="f32", progress=False)
        model = Model(dst, device, ctx=16)
        assert model.kv_type == model.kv.dtype == default, (name, model.cfg.head_dim)
        assert cache_dtype(model.kv.k[0]) == default
        with pytest.raises(VkharpError, match="unknown; use one of f16, f32"):
            Model(dst, device, ctx=16, kv_type="q8_0")
    with pytest.raises(VkharpError, match="head_dim a multiple of 8, this model's is 12.*--kv-type f32"):
        Model(dst, device, ctx=16, kv_type="f16")
