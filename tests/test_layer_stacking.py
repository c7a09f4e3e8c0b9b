"""Layer-stacked buffers: one pipeline serves every layer, the layer chosen per dispatch by a push constant.

Creating a pipeline compiles its shader (on lavapipe ~0.1-3 s each), so a model must not create one
per layer. Norm weights [L, DIM], RoPE tables [L, ROT/2] and KV caches [L, CTX, HK, D] stack the
layers; these tests check each op on a non-zero layer against its twin on that layer's slice, and
that two layers' dispatches share one pipeline.
"""
import numpy as np
import pytest

from engine import quant
from engine.ops.attention import attention, kv_append
from engine.ops.matmul import matmul, matvec
from engine.ops.norm import rmsnorm
from engine.ops.rope import rope
from engine.params import pack_step
from engine.reference.attention import attention as ref_attention
from engine.reference.attention import kv_append as ref_kv_append
from engine.reference.matmul import matmul as ref_matmul, matvec as ref_matvec
from engine.reference.norm import rmsnorm as ref_rmsnorm
from engine.reference.rope import rope as ref_rope
from engine.weights import upload_stacked
from util import max_rel_err, rand


def test_rmsnorm_stacked_weights_share_a_pipeline(device, rng):
    x, w = rand(rng, 3, 97), rand(rng, 4, 97)
    xb, wb = device.buffer(x), device.buffer(w, kind="const")
    outs = [device.buffer((3, 97)) for _ in range(2)]
    before = device.n_pipelines
    rec = device.recorder()
    rmsnorm(rec, outs[0], xb, wb, eps=1e-5, layer=1)
    rmsnorm(rec, outs[1], xb, wb, eps=1e-5, layer=3)
    rec.finish().run()
    assert device.n_pipelines - before == 2          # two outputs: two bindings; now the same ones:
    rec = device.recorder()
    rmsnorm(rec, outs[0], xb, wb, eps=1e-5, layer=2)
    rmsnorm(rec, outs[0], xb, wb, eps=1e-5, layer=1)
    rec.finish().run()
    assert device.n_pipelines - before == 2          # ...reused, whatever the layer
    assert max_rel_err(outs[0].read().reshape(3, 97), ref_rmsnorm(x, w[1], eps=1e-5)) < 1e-5
    assert max_rel_err(outs[1].read().reshape(3, 97), ref_rmsnorm(x, w[3], eps=1e-5)) < 1e-5


def test_rope_stacked_tables(device, rng):
    q, k = rand(rng, 5, 4, 16), rand(rng, 5, 2, 16)
    inv = np.stack([1.0 / (b ** (np.arange(0, 16, 2) / 16)) for b in (1e4, 1e6, 5e5)]).astype(np.float32)
    qb, kb = device.buffer(q), device.buffer(k)
    step = device.buffer(pack_step(pos=17, n_tokens=5))
    rec = device.recorder()
    rope(rec, qb, kb, device.buffer(inv, kind="const"), step, layer=1)
    rec.finish().run()
    want_q, want_k = ref_rope(q, k, inv[1], 17, 5)
    assert max_rel_err(qb.read().reshape(q.shape), want_q) < 1e-6
    assert max_rel_err(kb.read().reshape(k.shape), want_k) < 1e-6


def test_attention_and_append_on_a_stacked_cache(device, rng):
    layers, ctx, hq, hk, d, pos = 3, 40, 4, 2, 32, 11
    kc, vc = rand(rng, layers, hk, ctx, d), rand(rng, layers, hk, ctx, d)
    q, k, v = rand(rng, 1, hq, d, scale=3.0), rand(rng, 1, hk, d), rand(rng, 1, hk, d)
    kcb, vcb = device.buffer(kc), device.buffer(vc)
    qb, kb, vb = device.buffer(q), device.buffer(k), device.buffer(v)
    out = device.buffer((1, hq, d))
    step = device.buffer(pack_step(pos=pos, n_tokens=1))
    rec = device.recorder()
    attention(rec, out, qb, kb, vb, kcb, vcb, step, n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5, layer=2)
    kv_append(rec, kcb, vcb, kb, vb, step, layer=2)
    rec.finish().run()
    want = ref_attention(q, k, v, kc[2], vc[2], pos, 1, n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5)
    assert float(np.abs(out.read().reshape(want.shape) - want).max() / np.abs(v).max()) < 2e-5
    new_k, new_v = ref_kv_append(kc[2].copy(), vc[2].copy(), k, v, pos, 1)
    got_k, got_v = kcb.read().reshape(kc.shape), vcb.read().reshape(vc.shape)
    np.testing.assert_array_equal(got_k[2], new_k)
    np.testing.assert_array_equal(got_v[2], new_v)
    np.testing.assert_array_equal(got_k[:2], kc[:2])   # other layers untouched


@pytest.mark.parametrize("fmt", ["f16", "q8_0", "q4_1"])
@pytest.mark.parametrize("max_bytes", [None, "two_layers", "half_layer"])
def test_stacked_weights_pick_their_layer(device, rng, fmt, max_bytes):
    layers, rows, cols = 5, 37, 96
    packed = [quant.quantize(rand(rng, rows, cols), fmt) for _ in range(layers)]
    one = packed[0].nbytes
    limit = {None: None, "two_layers": 2 * one + 64, "half_layer": one // 2}[max_bytes]
    w = upload_stacked(device, packed, name="w", max_bytes=limit)
    if max_bytes == "two_layers":
        assert [p.layers for p in w.parts] == [2, 2, 1]
    if max_bytes == "half_layer":
        assert all(p.layers == 1 for p in w.parts) and len(w.parts) > layers
    bias = rand(rng, layers, rows)
    x1, x4 = rand(rng, cols), rand(rng, 4, cols)
    bb, xb1, xb4 = device.buffer(bias, kind="const"), device.buffer(x1), device.buffer(x4)
    outs = {l: (device.buffer(rows), device.buffer((4, rows))) for l in (1, 4)}
    rec = device.recorder()
    for layer, (o1, o4) in outs.items():
        matvec(rec, o1, w, xb1, bb, layer=layer)
        matmul(rec, o4, w, xb4, bb, layer=layer)
    rec.finish().run()
    for layer, (o1, o4) in outs.items():
        # f32 sums of 96 products in another order: ~1e-6 relative; the decoded weights are exact
        assert max_rel_err(o1.read(), ref_matvec(packed[layer], x1, bias[layer])) < 1e-5
        assert max_rel_err(o4.read().reshape(4, rows), ref_matmul(packed[layer], x4, bias[layer])) < 1e-5
