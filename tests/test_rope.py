"""shaders/rope.comp against engine/reference/rope.py, and rope_inv_freq against transformers."""
import numpy as np
import pytest

from engine.errors import VkharpError
from engine.ops.rope import rope
from models.rope import rope_inv_freq
from engine.params import pack_step
from engine.reference.rope import rope as ref_rope
from util import max_rel_err, rand

# sin/cos: Cody-Waite reduction + Cephes polynomials, |error| <= 1.5e-7 (measured up to position
# 131072; 2^-23 = 1.2e-7 is one ulp at 1). x0*cos - x1*sin then errs by <= (|x0| + |x1|) * (1.5e-7 +
# 2 roundings of 6e-8) ~ 5.4e-7 of max|x|; 1e-6 leaves margin. A wrong pair or position is O(1).
TOL = 1e-6

LLAMA3 = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=8192)


def _upload(device, arrays):
    return [device.buffer(a) for a in arrays]


def _run_rope(device, q, k, inv_freq, pos, n, style, wg=64):
    qb, kb = device.buffer(q), device.buffer(k)
    step = device.buffer(pack_step(pos=pos, n_tokens=n))
    rec = device.recorder()
    rope(rec, qb, kb, device.buffer(inv_freq, kind="const"), step, style=style, wg=wg)
    rec.finish().run()
    return qb.read().reshape(q.shape), kb.read().reshape(k.shape)


@pytest.mark.parametrize("style", ["half", "interleaved"])
@pytest.mark.parametrize("n_tok,n_valid,hq,hk,d,partial", [(1, 1, 9, 3, 64, 1.0), (7, 5, 4, 1, 48, 1.0),
                                                           (3, 3, 5, 5, 80, 0.5), (2, 1, 2, 1, 64, 0.25)])
@pytest.mark.parametrize("pos", [0, 37, 300])
@pytest.mark.parametrize("wg", [32, 64])
def test_rope_matches_twin(device, rng, style, n_tok, n_valid, hq, hk, d, partial, pos, wg):
    q, k = rand(rng, n_tok, hq, d), rand(rng, n_tok, hk, d)
    inv = rope_inv_freq(d, 10000.0, partial_rotary_factor=partial)
    got_q, got_k = _run_rope(device, q, k, inv, pos, n_valid, style, wg)
    want_q, want_k = ref_rope(q, k, inv, pos, n_valid, style=style)
    assert max_rel_err(got_q, want_q) < TOL and max_rel_err(got_k, want_k) < TOL
    # rows past P_NTOK and dims past the rotary part are untouched, bit for bit
    np.testing.assert_array_equal(got_q[n_valid:], q[n_valid:])
    np.testing.assert_array_equal(got_q[..., len(inv) * 2:], q[..., len(inv) * 2:])


@pytest.mark.parametrize("append", [False, True])
def test_rope_q_scale_and_zero_frequencies(device, rng, append):
    """longrope's attention factor (squared) scales q's rotated dims only; a NoPE layer's zero
    frequencies leave q and k bit for bit (cos 0 = 1, sin 0 = 0 exactly in the shader's polynomials)."""
    n, hq, hk, d = 5, 3, 1, 16
    q, k, v = rand(rng, n, hq, d), rand(rng, n, hk, d), rand(rng, n, hk, d)
    inv = np.stack([rope_inv_freq(d, 10000.0, partial_rotary_factor=0.75), np.zeros(6, np.float32)])
    for layer, q_scale in ((0, 1.5), (1, 1.0)):
        qb, kb = device.buffer(q), device.buffer(k)
        step = device.buffer(pack_step(pos=9, n_tokens=n))
        rec = device.recorder()
        kc, vc = (device.buffer(np.zeros((32, hk, d), np.float32)) for _ in range(2))   # act: readable here
        append_args = dict(append=(device.buffer(v), kc, vc)) if append else {}
        rope(rec, qb, kb, device.buffer(inv, kind="const"), step, layer=layer, q_scale=q_scale, **append_args)
        rec.finish().run()
        got_q, got_k = qb.read().reshape(q.shape), kb.read().reshape(k.shape)
        want_q, want_k = ref_rope(q, k, inv[layer], 9, n, q_scale=q_scale)
        if layer == 1:
            np.testing.assert_array_equal(got_q, q)
            np.testing.assert_array_equal(got_k, k)
        else:
            assert max_rel_err(got_q, want_q) < TOL and max_rel_err(got_k, want_k) < TOL
            np.testing.assert_array_equal(got_q[..., 12:], q[..., 12:])     # unrotated dims: not scaled
            assert abs(np.linalg.norm(got_q[..., :12]) / np.linalg.norm(q[..., :12]) - 1.5) < 1e-5
        if append:
            np.testing.assert_array_equal(kc.read().reshape(32, hk, d)[9:9 + n], got_k)


@pytest.mark.parametrize("pos", [4090, 8185, 65530, 131065])
def test_rope_large_positions(device, rng, pos):
    """The angle reduction keeps f32 sin/cos accurate where GLSL's own are unspecified (|a| > pi)."""
    q, k = rand(rng, 6, 2, 128), rand(rng, 6, 1, 128)
    inv = rope_inv_freq(128, 500000.0, LLAMA3)
    got_q, got_k = _run_rope(device, q, k, inv, pos, 6, "half")
    want_q, want_k = ref_rope(q, k, inv, pos, 6, style="half")
    assert max_rel_err(got_q, want_q) < TOL and max_rel_err(got_k, want_k) < TOL


def test_rope_matches_transformers(device, rng):
    """HF's own cos/sin (f32) and apply_rotary_pos_emb, including its float(pos) * inv_freq angles."""
    torch = pytest.importorskip("torch")
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    from transformers import LlamaConfig
    hq, hk, d, pos, n = 6, 2, 64, 1000, 5
    cfg = LlamaConfig(hidden_size=hq * d, num_attention_heads=hq, num_key_value_heads=hk, head_dim=d,
                      max_position_embeddings=1 << 16, rope_parameters=dict(rope_type="default", rope_theta=10000.0))
    emb = llama.LlamaRotaryEmbedding(cfg)
    q, k = rand(rng, n, hq, d), rand(rng, n, hk, d)
    positions = torch.arange(pos, pos + n)[None]
    cos, sin = emb(torch.zeros(1), positions)
    want_q, want_k = llama.apply_rotary_pos_emb(torch.from_numpy(q)[None].transpose(1, 2),
                                                torch.from_numpy(k)[None].transpose(1, 2), cos, sin)
    inv = rope_inv_freq(d, 10000.0)
    np.testing.assert_array_equal(inv, emb.inv_freq.numpy())
    got_q, got_k = _run_rope(device, q, k, inv, pos, n, "half")
    assert max_rel_err(got_q, want_q[0].transpose(0, 1).numpy()) < TOL
    assert max_rel_err(got_k, want_k[0].transpose(0, 1).numpy()) < TOL


def test_interleaved_is_half_on_permuted_dims(device, rng):
    """GGUF-llama's interleaved pairs are HF's rotate_half pairs after the converter's permutation:
    the same angles and arithmetic per pair, so the results agree bit for bit."""
    d = 64
    q, k = rand(rng, 3, 2, d), rand(rng, 3, 1, d)
    perm = np.concatenate([np.arange(0, d, 2), np.arange(1, d, 2)])   # (2i, 2i+1) -> (i, i + d/2)
    inv = rope_inv_freq(d, 10000.0)
    inter_q, inter_k = _run_rope(device, q, k, inv, 21, 3, "interleaved")
    half_q, half_k = _run_rope(device, q[..., perm], k[..., perm], inv, 21, 3, "half")
    np.testing.assert_array_equal(inter_q[..., perm], half_q)
    np.testing.assert_array_equal(inter_k[..., perm], half_k)


def test_replays_read_the_step_buffer(device, rng):
    """One recorded program, replayed at several positions: P_POS comes from the uploaded step buffer."""
    q, k = rand(rng, 1, 3, 64), rand(rng, 1, 1, 64)
    inv = rope_inv_freq(64, 10000.0)
    qb, kb, step = device.buffer(q), device.buffer(k), device.buffer(pack_step(pos=0, n_tokens=1))
    rec = device.recorder()
    rec.upload(step)
    rope(rec, qb, kb, device.buffer(inv, kind="const"), step)
    prog = rec.finish()
    for pos in (5, 200, 3):
        qb.write(q)
        kb.write(k)
        step.host_view()[:] = pack_step(pos=pos, n_tokens=1)
        prog.run()
        want_q, _ = ref_rope(q, k, inv, pos, 1)
        assert max_rel_err(qb.read().reshape(q.shape), want_q) < TOL


# --- inverse frequencies against transformers ----------------------------------------------------------

HF_CASES = [dict(rope_type="default", rope_theta=10000.0), dict(rope_type="default", rope_theta=500000.0),
            dict(rope_type="linear", rope_theta=1e6, factor=8.0), dict(LLAMA3, rope_theta=500000.0),
            dict(LLAMA3, rope_theta=500000.0, factor=32.0),
            dict(rope_type="llama3", rope_theta=10000.0, factor=4.0, low_freq_factor=2.0, high_freq_factor=8.0,
                 original_max_position_embeddings=2048),
            dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.5),
            dict(rope_type="linear", rope_theta=10000.0, factor=4.0, partial_rotary_factor=0.25)]


def _hf_inv_freq(head_dim, params):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    if params["rope_type"] == "default":
        # transformers 5 computes default frequencies in each model's rotary class; Phi's honours
        # partial_rotary_factor (its default is 0.5: set it) and is otherwise Llama's.
        from transformers.models.phi.modeling_phi import PhiRotaryEmbedding
        params = {"partial_rotary_factor": 1.0, **params}
        cfg = transformers.PhiConfig(hidden_size=head_dim * 4, num_attention_heads=4, rope_parameters=params,
                                     partial_rotary_factor=params["partial_rotary_factor"],
                                     max_position_embeddings=1 << 17)
        return PhiRotaryEmbedding.compute_default_rope_parameters(cfg)[0].numpy()
    cfg = transformers.LlamaConfig(hidden_size=head_dim * 4, num_attention_heads=4, head_dim=head_dim,
                                   rope_parameters=dict(params), max_position_embeddings=1 << 17)
    return ROPE_INIT_FUNCTIONS[params["rope_type"]](cfg, "cpu")[0].numpy()


def test_inv_freq_matches_transformers():
    """Bit for bit except where torch's vectorised powf is not correctly rounded (1 ulp, a few %)."""
    total = differ = 0
    for head_dim in (48, 64, 80, 96, 128, 256):
        for params in HF_CASES:
            want = _hf_inv_freq(head_dim, params)
            got = rope_inv_freq(head_dim, params["rope_theta"], params)
            assert got.dtype == np.float32 and got.shape == want.shape, (head_dim, params)
            ulps = np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32))
            assert ulps.max() <= 1, (head_dim, params, ulps.max())
            total, differ = total + ulps.size, differ + int((ulps > 0).sum())
    assert differ <= 0.02 * total, (differ, total)


def test_llama3_scaling_changes_only_low_frequencies():
    base = rope_inv_freq(128, 500000.0)
    scaled = rope_inv_freq(128, 500000.0, dict(LLAMA3, rope_theta=500000.0))
    wavelen = 2 * np.pi / base
    np.testing.assert_array_equal(scaled[wavelen < 8192 / 4], base[wavelen < 8192 / 4])
    np.testing.assert_allclose(scaled[wavelen > 8192], base[wavelen > 8192] / 8, rtol=1e-6)


def test_bad_rope_arguments_are_clear_errors(device):
    with pytest.raises(VkharpError, match="not supported"):
        rope_inv_freq(64, 10000.0, {"rope_type": "yarn", "factor": 4.0})
    with pytest.raises(VkharpError, match="low_freq_factor"):
        rope_inv_freq(64, 10000.0, {"rope_type": "llama3", "factor": 8.0})
    with pytest.raises(VkharpError, match="even"):
        rope_inv_freq(64, 10000.0, partial_rotary_factor=0.3)
    q, k = device.buffer((1, 2, 64)), device.buffer((1, 1, 64))
    step = device.buffer(pack_step(pos=0, n_tokens=1))
    rec = device.recorder()
    with pytest.raises(VkharpError, match="style"):
        rope(rec, q, k, device.buffer(rope_inv_freq(64, 1e4)), step, style="neox")
    with pytest.raises(VkharpError, match="rotates 66 dims"):
        rope(rec, q, k, device.buffer(np.ones(33, np.float32)), step)
    with pytest.raises(VkharpError, match="step buffer"):
        rope(rec, q, k, device.buffer(rope_inv_freq(64, 1e4)), device.buffer(4))


@pytest.mark.parametrize("style", ["half", "interleaved"])
@pytest.mark.parametrize("pos", [0, 37, 300])
def test_two_streams_share_one_position(device, rng, style, pos):
    q, k = rand(rng, 2, 9, 64), rand(rng, 2, 3, 64)
    inv = rope_inv_freq(64, 10000.0)
    qb, kb = device.buffer(q), device.buffer(k)
    rec = device.recorder()
    rope(rec, qb, kb, device.buffer(inv, kind="const"), device.buffer(pack_step(pos=pos, n_tokens=2)), style=style,
         dual=True)
    rec.finish().run()
    want_q, want_k = ref_rope(q, k, inv, pos, 2, style=style, dual=True)
    assert max_rel_err(qb.read().reshape(q.shape), want_q) < TOL and max_rel_err(kb.read().reshape(k.shape), want_k) < TOL
    one_q, _ = ref_rope(q[1:], k[1:], inv, pos, 1, style=style)   # row 1 as a lone token at pos
    assert max_rel_err(want_q[1:], one_q) == 0


# The KV append fused into RoPE (`rope_*_append`): q and k as rope alone, and the caches exactly as
# kv_append would write the rotated k and v (the same float32 values, copied). Odd sizes: 3 query
# heads over 1 or 3 key heads, partial rotary (ROT < D: the unrotated dims are copied too), a chunk
# of 5 rows with 4 valid, a chunk reaching past the cache's end, layer-stacked caches, both styles.
@pytest.mark.parametrize("style", ["half", "interleaved"])
@pytest.mark.parametrize("hq,hk,d,rot,pos", [(3, 1, 64, 64, 3), (9, 3, 48, 32, 11), (3, 3, 16, 8, 29)])
def test_rope_with_fused_append_matches_the_twins(device, rng, style, hq, hk, d, rot, pos):
    from engine.ops.attention import kv_cache_buffers
    from engine.reference.attention import kv_append as ref_append
    n, valid, ctx, layers, kv_layer = 5, 4, 32, 3, 1
    q, k, v = rand(rng, n, hq, d), rand(rng, n, hk, d), rand(rng, n, hk, d)
    inv = (1.0 / (10000.0 ** (np.arange(0, rot, 2, dtype=np.float32) / rot))).astype(np.float32)
    qb, kb, vb = device.buffer(q), device.buffer(k), device.buffer(v)
    kc, vc = (device.buffer(rand(rng, layers, hk, ctx, d)) for _ in range(2))   # act: readable here
    kc0, vc0 = kc.read().reshape(layers, hk, ctx, d), vc.read().reshape(layers, hk, ctx, d)
    rec = device.recorder()
    rope(rec, qb, kb, device.buffer(inv, kind="const"), device.buffer(pack_step(pos=pos, n_tokens=valid)),
         style=style, append=(vb, kc, vc), kv_layer=kv_layer)
    rec.finish().run()
    want_q, want_k = ref_rope(q, k, inv, pos, valid, style=style)
    assert max_rel_err(qb.read().reshape(q.shape), want_q) < TOL
    got_k = kb.read().reshape(k.shape)
    assert max_rel_err(got_k, want_k) < TOL
    want_kc, want_vc = kc0.copy(), vc0.copy()
    want_kc[kv_layer], want_vc[kv_layer] = ref_append(kc0[kv_layer], vc0[kv_layer], got_k, v, pos, valid)
    np.testing.assert_array_equal(kc.read().reshape(kc0.shape), want_kc)   # copies: exact
    np.testing.assert_array_equal(vc.read().reshape(vc0.shape), want_vc)


def test_rope_with_fused_append_two_streams(device, rng):
    from engine.reference.attention import kv_append_dual
    hq, hk, d, ctx, pos = 3, 1, 32, 16, 7
    q, k, v = rand(rng, 2, hq, d), rand(rng, 2, hk, d), rand(rng, 2, hk, d)
    inv = (1.0 / (10000.0 ** (np.arange(0, d, 2, dtype=np.float32) / d))).astype(np.float32)
    qb, kb, vb = device.buffer(q), device.buffer(k), device.buffer(v)
    caches = [(device.buffer(rand(rng, hk, ctx, d)), device.buffer(rand(rng, hk, ctx, d))) for _ in range(2)]
    before = [(a.read().reshape(hk, ctx, d), b.read().reshape(hk, ctx, d)) for a, b in caches]
    rec = device.recorder()
    rope(rec, qb, kb, device.buffer(inv, kind="const"), device.buffer(pack_step(pos=pos, n_tokens=2)),
         dual=True, append=(vb, *caches[0]), second=caches[1])
    rec.finish().run()
    want = kv_append_dual(before, kb.read().reshape(k.shape), v, pos)
    for (a, b), (wa, wb) in zip(caches, want):
        np.testing.assert_array_equal(a.read().reshape(wa.shape), wa)
        np.testing.assert_array_equal(b.read().reshape(wb.shape), wb)
    with pytest.raises(VkharpError, match="two-stream form"):
        rope(device.recorder(), qb, kb, device.buffer(inv, kind="const"), device.buffer(pack_step(pos=0, n_tokens=2)),
             append=(vb, *caches[0]), second=caches[1])
