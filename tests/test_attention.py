"""shaders/attention.comp and shaders/kv_append.comp against engine/reference/attention.py."""
import numpy as np
import pytest

from engine.errors import DeviceLimitError, VkharpError
from engine.ops.attention import attention, kv_append, kv_cache_buffers
from engine.params import pack_step
from engine.reference.attention import attention as ref_attention
from engine.reference.attention import kv_append as ref_kv_append
from util import rand

# Error relative to max|v| (the output is a convex combination of value rows, so a relative error e
# of the weights moves it by at most e * max|v|). Scores: f32 dots of D <= 80 terms, rounding error
# ~ sqrt(D) * 6e-8 * sum|q k| * scale ~ 2.4e-6 (|s| ~ 3 here); exp: Vulkan allows 3 + 2|x| ulp, at
# most ~2.6e-6 for the weights that matter; sums of <= 310 weights ~ sqrt(L) * 6e-8 ~ 1e-6. About
# 6e-6 in all; 2e-5 leaves margin (measured: ~2e-7). One key too many or too few moves the output by
# ~ its weight, >= 1e-3 here.
TOL = 2e-5
Q_GAIN = 3.0   # scores ~ N(0, 9): peaked softmax, the running max moves often


def by_head(rows):
    """Rows [positions, hk, d] as a cache holds them: [hk, positions, d]."""
    return np.ascontiguousarray(np.swapaxes(rows, 0, 1))


def _err(got, want, v_scale):
    return float(np.max(np.abs(got.astype(np.float64) - want)) / v_scale)


class Case:
    """Random q/k/v for a chunk of n_tok tokens, caches of ctx positions, as arrays and act buffers."""

    def __init__(self, device, rng, n_tok, hq, hk, d, ctx):
        self.hq, self.hk, self.d = hq, hk, d
        self.q = rand(rng, n_tok, hq, d, scale=Q_GAIN)
        self.k, self.v = rand(rng, n_tok, hk, d), rand(rng, n_tok, hk, d)
        self.kc, self.vc = rand(rng, hk, ctx, d), rand(rng, hk, ctx, d)
        self.bufs = [device.buffer(x) for x in (self.q, self.k, self.v, self.kc, self.vc)]
        self.out = device.buffer((n_tok, hq, d))

    def run(self, device, pos, n, **kw):
        step = device.buffer(pack_step(pos=pos, n_tokens=n))
        rec = device.recorder()
        attention(rec, self.out, *self.bufs, step, n_heads=self.hq, n_kv_heads=self.hk, head_dim=self.d,
                  scale=self.d ** -0.5, **kw)
        rec.finish().run()
        return self.out.read().reshape(self.q.shape)

    def want(self, pos, n, window=0, softcap=0.0):
        return ref_attention(self.q, self.k, self.v, self.kc, self.vc, pos, n, n_heads=self.hq, n_kv_heads=self.hk,
                             head_dim=self.d, scale=self.d ** -0.5, window=window, softcap=softcap)

    def check(self, device, pos, n, window=0, softcap=0.0, **kw):
        got = self.run(device, pos, n, window=window, softcap=softcap, **kw)
        want = self.want(pos, n, window, softcap)
        assert np.isfinite(got).all()
        err = _err(got, want, np.abs(self.v).max())
        assert err < TOL, (pos, n, window, kw, err)
        assert not got[n:].any(), "rows past P_NTOK must be written as 0"


SHAPES = [(9, 3, 64), (4, 1, 48), (4, 2, 80)]   # SmolLM2's, multi-query, an odd head count per group
LIGHT = (4, 2, 32)                              # quick to compile: work-group sizes, windows
CTX = 310   # one cache size everywhere, so that tests share compiled pipelines (P_POS is not a constant)
# The prefill variant's two layouts: keys handed between lanes by subgroup shuffles (the default on
# CPU devices) and the shared-memory tile (GPUs); both are tested here whatever the device.
PREFILLS = [dict(variant="prefill", shuffle=True), dict(variant="prefill", shuffle=False)]
VARIANTS = [dict(variant="decode")] + PREFILLS


@pytest.mark.parametrize("hq,hk,d", SHAPES)
@pytest.mark.parametrize("pos", [0, 1, 37, 300])
def test_decode(device, rng, hq, hk, d, pos):
    Case(device, rng, 1, hq, hk, d, CTX).check(device, pos, 1, variant="decode")


@pytest.mark.parametrize("kw", PREFILLS, ids=["shfl", "tile"])
@pytest.mark.parametrize("hq,hk,d", SHAPES)
@pytest.mark.parametrize("pos", [0, 1, 37, 300])
def test_prefill_chunk_of_7_with_5_valid(device, rng, hq, hk, d, pos, kw):
    Case(device, rng, 7, hq, hk, d, CTX).check(device, pos, 5, **kw)


@pytest.mark.parametrize("hq,hk,d", SHAPES)
@pytest.mark.parametrize("pos,n,window", [(0, 7, 0), (37, 7, 0), (300, 5, 0), (300, 7, 40)])
def test_prefill_layouts_agree_bit_for_bit(device, rng, hq, hk, d, pos, n, window):
    """The shuffle layout adds the same products in the same order as the tile; the keys a row does
    not see leave its state exactly as it was (alpha = 1, weight 0). d = 48 and 80 leave lanes of the
    last shuffle round without a vec4 of the key."""
    case = Case(device, rng, 7, hq, hk, d, CTX)
    a = case.run(device, pos, n, window=window, **PREFILLS[0])
    b = case.run(device, pos, n, window=window, **PREFILLS[1])
    np.testing.assert_array_equal(a, b)
    assert np.abs(a[:n]).max() > 0


def test_prefill_shuffle_default_and_errors(device, rng):
    """CPU devices (lavapipe: subgroups of 8 with shuffles) record the shuffle layout by default and
    at one subgroup per group; GPUs (and the GPU profile) the shared-memory tile."""
    info = device.info
    case = Case(device, rng, 7, *LIGHT, CTX)
    rec = device.recorder()
    attention(rec, case.out, *case.bufs, device.buffer(pack_step(pos=5, n_tokens=7)), n_heads=LIGHT[0],
              n_kv_heads=LIGHT[1], head_dim=LIGHT[2], scale=1.0, variant="prefill")
    name = [s.label for s in rec.steps if s.kind == "dispatch"][-1]
    assert name == ("attention_prefill_shfl_tx" if info.type == "cpu" else "attention_prefill")   # CPU: texel caches too
    with pytest.raises(VkharpError, match="prefill-variant"):
        case.run(device, 5, 1, variant="decode", shuffle=True)
    if info.subgroup_size > 1:
        with pytest.raises(DeviceLimitError, match="whole subgroups"):
            case.run(device, 5, 7, variant="prefill", shuffle=True, wg=info.subgroup_size + 1)


@pytest.mark.parametrize("variant,wg,shuffle", [("decode", 16, None), ("decode", 32, None), ("decode", 64, None),
                                                ("decode", 128, None), ("prefill", 16, False), ("prefill", 64, False),
                                                ("prefill", 128, False), ("prefill", 8, True), ("prefill", 16, True),
                                                ("prefill", 128, True)])
@pytest.mark.parametrize("pos", [0, 37, 300])
def test_work_group_sizes(device, rng, variant, wg, shuffle, pos):
    if shuffle and wg % device.info.subgroup_size:
        pytest.skip("the shuffle layout needs whole subgroups")
    Case(device, rng, 7, *LIGHT, CTX).check(device, pos, 7, variant=variant, wg=wg, shuffle=shuffle)


@pytest.mark.parametrize("kw", VARIANTS, ids=["decode", "shfl", "tile"])
@pytest.mark.parametrize("pos,window", [(0, 3), (37, 16), (300, 40), (300, 1)])
def test_sliding_window(device, rng, kw, pos, window):
    case = Case(device, rng, 7, *LIGHT, CTX)
    case.check(device, pos, 6, window=window, **kw)
    full = case.want(pos, 6)           # the window must matter: the result without it differs
    assert _err(case.out.read().reshape(full.shape), full, np.abs(case.v).max()) > 100 * TOL


@pytest.mark.parametrize("kw", VARIANTS, ids=["decode", "shfl", "tile"])
def test_window_wider_than_the_context_changes_nothing(device, rng, kw):
    case = Case(device, rng, 7, *LIGHT, CTX)
    case.check(device, 5, 6, window=100, **kw)
    np.testing.assert_allclose(case.out.read().reshape(case.q.shape), case.want(5, 6), rtol=0, atol=TOL)


@pytest.mark.parametrize("kw", VARIANTS, ids=["decode", "shfl", "tile"])
def test_softcap(device, rng, kw):
    Case(device, rng, 3, *LIGHT, CTX).check(device, 40, 3, softcap=2.0, **kw)


def test_softcap_with_decode_split_over_keys(device, rng):
    # each key slice caps its own scores before its online softmax: the merge must not care (Gemma 2)
    Case(device, rng, 1, *LIGHT, CTX).check(device, 40, 1, softcap=2.0, variant="decode", splits=3)


@pytest.mark.parametrize("hpg,team,wg", [(1, 1, 32), (3, 1, 32), (3, 2, 64), (3, 4, 32), (1, 16, 64),
                                         (3, 16, 16)])
def test_decode_layouts(device, rng, hpg, team, wg):
    """Every kind of (heads per group, team) split, down to teams of one thread per vec4 of the head."""
    Case(device, rng, 1, 9, 3, 64, CTX).check(device, 150, 1, variant="decode", wg=wg, heads_per_group=hpg,
                                              team=team)


@pytest.mark.parametrize("hpg,tile,shuffle", [(1, 8, False), (3, 5, False), (1, None, True), (3, None, True)])
def test_prefill_layouts(device, rng, hpg, tile, shuffle):
    Case(device, rng, 7, 9, 3, 64, CTX).check(device, 101, 7, variant="prefill", heads_per_group=hpg,
                                              key_tile=tile, shuffle=shuffle)


def test_variants_agree_closely(device, rng):
    case = Case(device, rng, 7, 9, 3, 64, CTX)
    a = case.run(device, 250, 7, variant="decode")
    b = case.run(device, 250, 7, variant="prefill")
    assert _err(a, b.astype(np.float64), np.abs(case.v).max()) < TOL


# --- KV cache ------------------------------------------------------------------------------------------

def test_kv_append_matches_twin(device, rng):
    hk, d, ctx = 3, 64, 40
    k, v = rand(rng, 7, hk, d), rand(rng, 7, hk, d)
    kc0, vc0 = rand(rng, hk, ctx, d), rand(rng, hk, ctx, d)
    for pos, n in [(3, 5), (37, 5), (0, 7)]:           # (37, 5): only rows 37..39 fit
        kc, vc = device.buffer(kc0), device.buffer(vc0)    # act copies so the test can read them back
        rec = device.recorder()
        kv_append(rec, kc, vc, device.buffer(k), device.buffer(v), device.buffer(pack_step(pos=pos, n_tokens=n)))
        rec.finish().run()
        want_k, want_v = ref_kv_append(kc0, vc0, k, v, pos, n)
        np.testing.assert_array_equal(kc.read().reshape(kc0.shape), want_k)
        np.testing.assert_array_equal(vc.read().reshape(vc0.shape), want_v)


def _layer_program(device, n_tok, hq, hk, d, k_cache, v_cache, step, **kw):
    """Record one layer's attention part for chunks of n_tok tokens: upload step, attend, append."""
    q, k, v = device.buffer((n_tok, hq, d)), device.buffer((n_tok, hk, d)), device.buffer((n_tok, hk, d))
    out = device.buffer((n_tok, hq, d))
    rec = device.recorder()
    rec.upload(step)
    attention(rec, out, q, k, v, k_cache, v_cache, step, n_heads=hq, n_kv_heads=hk, head_dim=d,
              scale=d ** -0.5, **kw)
    kv_append(rec, k_cache, v_cache, k, v, step)
    return rec.finish(), (q, k, v, out)


def _replay(prog, bufs, step, q, k, v, pos, n):
    for b, x in zip(bufs, (q, k, v)):
        b.write(x)
    step.host_view()[:] = pack_step(pos=pos, n_tokens=n)
    prog.run()
    return bufs[3].read().reshape(q.shape)


@pytest.mark.parametrize("variant", ["decode", "prefill"])
def test_replays_use_the_cache_across_programs(device, rng, variant):
    """A prefill program (chunks of 8, the last one partial) then a decode program, each recorded once
    and replayed: every output matches attention over the whole history, which only the cache holds."""
    hq, hk, d, ctx, total = 9, 3, 64, 64, 45
    kc, vc = kv_cache_buffers(device, ctx, hk, d, name="layer0")
    step = device.buffer(pack_step(pos=0, n_tokens=1))
    prefill, pbufs = _layer_program(device, 8, hq, hk, d, kc, vc, step, variant="prefill")
    decode, dbufs = _layer_program(device, 1, hq, hk, d, kc, vc, step, variant=variant, wg=32)
    q, k, v = rand(rng, total, hq, d, scale=Q_GAIN), rand(rng, total, hk, d), rand(rng, total, hk, d)
    pos = 0
    for chunk in (8, 8, 5):                            # positions 0..20 in chunks
        pad = lambda x: np.concatenate([x[pos:pos + chunk], np.zeros((8 - chunk,) + x.shape[1:], np.float32)])
        got = _replay(prefill, pbufs, step, pad(q), pad(k), pad(v), pos, chunk)
        want = ref_attention(q[pos:pos + chunk], k[pos:pos + chunk], v[pos:pos + chunk], by_head(k[:pos]), by_head(v[:pos]), pos, chunk,
                             n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5)
        assert _err(got[:chunk], want, np.abs(v).max()) < TOL
        pos += chunk
    for pos in range(pos, total):                      # then one token at a time, crossing WG = 32
        got = _replay(decode, dbufs, step, q[pos:pos + 1], k[pos:pos + 1], v[pos:pos + 1], pos, 1)
        want = ref_attention(q[pos:pos + 1], k[pos:pos + 1], v[pos:pos + 1], by_head(k[:pos]), by_head(v[:pos]), pos, 1,
                             n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5)
        assert _err(got, want, np.abs(v).max()) < TOL, pos


def test_truncation_equals_a_fresh_run(device, rng):
    """Write 13 positions, roll back to 6 and decode a new token: bit-identical to a fresh cache that
    only ever saw the 6 kept tokens (rollback is just a smaller P_POS)."""
    hq, hk, d, ctx = 4, 2, 64, 32
    q, k, v = rand(rng, 13, hq, d, scale=Q_GAIN), rand(rng, 13, hk, d), rand(rng, 13, hk, d)
    xq, xk, xv = rand(rng, 1, hq, d, scale=Q_GAIN), rand(rng, 1, hk, d), rand(rng, 1, hk, d)

    def session(prefix_len, extra_decodes):
        kc, vc = kv_cache_buffers(device, ctx, hk, d)
        step = device.buffer(pack_step(pos=0, n_tokens=1))
        prefill, pbufs = _layer_program(device, 8, hq, hk, d, kc, vc, step)
        decode, dbufs = _layer_program(device, 1, hq, hk, d, kc, vc, step)
        pad = lambda x: np.concatenate([x[:prefix_len], np.zeros((8 - prefix_len,) + x.shape[1:], np.float32)])
        _replay(prefill, pbufs, step, pad(q), pad(k), pad(v), 0, prefix_len)
        for pos in range(prefix_len, prefix_len + extra_decodes):
            _replay(decode, dbufs, step, q[pos:pos + 1], k[pos:pos + 1], v[pos:pos + 1], pos, 1)
        return decode, dbufs, step

    decode, dbufs, step = session(8, 5)                # cache holds positions 0..12
    rolled_back = _replay(decode, dbufs, step, xq, xk, xv, 6, 1)
    decode, dbufs, step = session(6, 0)                # fresh: positions 0..5 only
    fresh = _replay(decode, dbufs, step, xq, xk, xv, 6, 1)
    np.testing.assert_array_equal(rolled_back, fresh)
    want = ref_attention(xq, xk, xv, by_head(k[:6]), by_head(v[:6]), 6, 1, n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5)
    assert _err(fresh, want, np.abs(v).max()) < TOL


# --- errors --------------------------------------------------------------------------------------------

def test_cache_too_big_for_the_device_is_a_device_limit_error(device):
    too_many = device.max_buffer_bytes // (2 * 64 * 4) + 1
    with pytest.raises(DeviceLimitError, match="at most"):
        kv_cache_buffers(device, too_many, 2, 64)


def test_attention_reads_what_the_same_program_appended(device, rng):
    """Real barriers order a cache write before a read in one program: append token 0, then attend
    from token 1 over the cache (position 0, written just before) and its own keys."""
    hq, hk, d = 2, 1, 8
    kc, vc = kv_cache_buffers(device, 16, hk, d)
    q, k, v = rand(rng, 2, hq, d, scale=Q_GAIN), rand(rng, 2, hk, d), rand(rng, 2, hk, d)
    out = device.buffer((1, hq, d))
    rec = device.recorder()
    kv_append(rec, kc, vc, device.buffer(k[:1]), device.buffer(v[:1]), device.buffer(pack_step(pos=0, n_tokens=1)))
    attention(rec, out, device.buffer(q[1:]), device.buffer(k[1:]), device.buffer(v[1:]), kc, vc,
              device.buffer(pack_step(pos=1, n_tokens=1)), n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5)
    assert rec.steps[-2].kind == "barrier"
    rec.finish().run()
    want = ref_attention(q[1:], k[1:], v[1:], k[:1], v[:1], 1, 1, n_heads=hq, n_kv_heads=hk, head_dim=d,
                         scale=d ** -0.5)
    assert _err(out.read().reshape(want.shape), want, np.abs(v).max()) < TOL


def test_bad_shapes_are_clear_errors(device):
    q, out = device.buffer((1, 4, 64)), device.buffer((1, 4, 64))
    k, v = device.buffer((1, 2, 64)), device.buffer((1, 2, 64))
    kc, vc = device.buffer((10, 2, 64)), device.buffer((10, 2, 64))
    step = device.buffer(pack_step(pos=0, n_tokens=1))
    rec = device.recorder()
    kw = dict(n_heads=4, n_kv_heads=2, head_dim=64, scale=0.125)
    with pytest.raises(VkharpError, match="multiple of n_kv_heads"):
        attention(rec, out, q, k, v, kc, vc, step, **dict(kw, n_kv_heads=3))
    with pytest.raises(VkharpError, match="multiple of 4"):
        attention(rec, out, q, k, v, kc, vc, step, **dict(kw, head_dim=62))
    with pytest.raises(VkharpError, match="k "):
        attention(rec, out, q, device.buffer((1, 1, 64)), v, kc, vc, step, **kw)
    with pytest.raises(VkharpError, match="caches"):
        attention(rec, out, q, k, v, kc, device.buffer((9, 2, 64)), step, **kw)
    with pytest.raises(VkharpError, match="step buffer"):
        attention(rec, out, q, k, v, kc, vc, device.buffer(8), **kw)
    with pytest.raises(VkharpError, match="power of two"):
        attention(rec, out, q, k, v, kc, vc, step, variant="decode", wg=48, **kw)
    with pytest.raises(VkharpError, match="heads_per_group"):
        attention(rec, out, q, k, v, kc, vc, step, heads_per_group=3, **kw)
    with pytest.raises(VkharpError, match="variant"):
        attention(rec, out, q, k, v, kc, vc, step, variant="flash", **kw)
    with pytest.raises(VkharpError, match="kv_append"):
        kv_append(rec, kc, vc, k, device.buffer((1, 2, 32)), step)


# --- split decode: a query row's keys in slices, one group each, merged by the last to finish -------

@pytest.mark.parametrize("splits", [1, 2, 5, 7])
@pytest.mark.parametrize("pos,window", [(0, 0), (63, 0), (64, 0), (200, 0), (300, 0), (300, 50), (130, 70)])
def test_split_decode_matches_twin(device, rng, splits, pos, window):
    """Slices of >= 64 keys: at pos 0 one slice holds the only key and the others are empty; 300 keys
    over 7 slices leaves some short; windows cut the first slices. The merge rescales each slice by
    exp(m_s - M), a few more roundings than one running state: the same tolerance."""
    case = Case(device, rng, 1, 9, 3, 64, CTX)
    case.check(device, pos, 1, window=window, variant="decode", splits=splits)


def test_split_decode_replays_reset_their_counts(device, rng):
    """One recorded program replayed at several positions: each replay's merge needs every row's count
    back at 0 (the merging group resets it), or a later replay would merge before all slices are in."""
    case = Case(device, rng, 1, 9, 3, 64, CTX)
    step = device.buffer(pack_step(pos=0, n_tokens=1), kind="param")
    rec = device.recorder()
    attention(rec, case.out, *case.bufs, step, n_heads=9, n_kv_heads=3, head_dim=64, scale=64 ** -0.5,
              variant="decode", splits=4)
    prog = rec.finish()
    for pos in (300, 7, 150, 299, 0):
        step.host_view()[:] = pack_step(pos=pos, n_tokens=1)
        prog.run()
        err = _err(case.out.read().reshape(case.q.shape), case.want(pos, 1), np.abs(case.v).max())
        assert err < TOL, (pos, err)


def test_split_counts_are_clear_errors(device, rng):
    case = Case(device, rng, 1, 4, 2, 32, CTX)
    for bad in (0, 33, 2.5):
        with pytest.raises(VkharpError, match="splits must be"):
            case.run(device, 5, 1, variant="decode", splits=bad)
    with pytest.raises(VkharpError, match="decode-variant"):
        case.run(device, 5, 1, variant="prefill", splits=3)


# --- HARP's two streams (N = 2 rows at one position, row 1 over its own caches) --------------------

@pytest.mark.parametrize("hq,hk,d", SHAPES)
@pytest.mark.parametrize("pos", [0, 1, 37, 300])
@pytest.mark.parametrize("splits", [1, 3])
def test_two_stream_attention_and_append_match_twin(device, rng, hq, hk, d, pos, splits):
    from engine.reference.attention import attention_dual, kv_append_dual
    q, k, v = rand(rng, 2, hq, d, scale=Q_GAIN), rand(rng, 2, hk, d), rand(rng, 2, hk, d)
    caches = [(rand(rng, hk, CTX, d), rand(rng, hk, CTX, d)) for _ in range(2)]
    bufs = [device.buffer(x) for x in (q, k, v)]
    cbufs = [(device.buffer(kc), device.buffer(vc)) for kc, vc in caches]
    out, step = device.buffer((2, hq, d)), device.buffer(pack_step(pos=pos, n_tokens=2))
    rec = device.recorder()
    attention(rec, out, *bufs, *cbufs[0], step, n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5,
              second=cbufs[1], splits=splits)
    rec.finish().run()
    want = attention_dual(q, k, v, caches, pos, n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5)
    assert _err(out.read().reshape(q.shape), want, np.abs(v).max()) < TOL
    # the rows really differ from one stream over one cache (row 1 over cache 0 would be wrong)
    wrong = ref_attention(q[1:], k[1:], v[1:], *caches[0], pos, 1, n_heads=hq, n_kv_heads=hk, head_dim=d,
                          scale=d ** -0.5)
    if pos:
        assert _err(out.read().reshape(q.shape)[1:], wrong, np.abs(v).max()) > 1e-3
    rec = device.recorder()
    kv_append(rec, *cbufs[0], bufs[1], bufs[2], step, second=cbufs[1])
    rec.finish().run()
    for (kb, vb), (wk, wv) in zip(cbufs, kv_append_dual(caches, k, v, pos)):
        np.testing.assert_array_equal(kb.read().reshape(wk.shape), wk)
        np.testing.assert_array_equal(vb.read().reshape(wv.shape), wv)


def test_two_stream_form_needs_two_rows(device, rng):
    kc, vc = device.buffer((8, 1, 16)), device.buffer((8, 1, 16))
    q, k, v, out = device.buffer((3, 2, 16)), device.buffer((3, 1, 16)), device.buffer((3, 1, 16)), device.buffer((3, 2, 16))
    step = device.buffer(pack_step(pos=0, n_tokens=3))
    with pytest.raises(VkharpError, match="N = 2"):
        attention(device.recorder(), out, q, k, v, kc, vc, step, n_heads=2, n_kv_heads=1, head_dim=16, scale=1.0,
                  second=(kc, vc))


def test_default_work_group_is_whole_subgroups_on_gpus(device):
    from dataclasses import replace
    from engine.ops.attention import default_wg
    assert default_wg(device.info) == 32
    # CPU devices: one SIMD program per decode group (lavapipe: 8 lanes)
    assert default_wg(replace(device.info, type="cpu", subgroup_size=8), "decode") == 8
    assert default_wg(replace(device.info, type="cpu", subgroup_size=8), "prefill") == 32
    assert default_wg(replace(device.info, type="discrete", subgroup_size=32), "decode") == 32
    assert default_wg(replace(device.info, type="discrete", subgroup_size=64)) == 64   # AMD wave64
    assert default_wg(replace(device.info, type="discrete", subgroup_size=32)) == 32
    assert default_wg(replace(device.info, type="cpu", subgroup_size=64)) == 32


# --- RoPE and the KV append fused into decode attention (`attention_decode*_rope`) -----------------
# q and k go in unrotated; the output must be the twins' rope -> kv_append -> attention, and the cache
# row P_POS the rotated key and the value (rotation error ~1e-7 relative: reference.rope's float64
# sin/cos against sincos.glsl's 1.5e-7). Odd sizes: partial rotary (ROT < D), a stacked frequency
# table and layer-stacked caches (layers other than the one asked must not change), q_scale != 1.

def _fused_case(rng, n, hq, hk, d, rot, layers=3):
    q, k, v = rand(rng, n, hq, d, scale=Q_GAIN), rand(rng, n, hk, d), rand(rng, n, hk, d)
    base = 10000.0 ** (np.arange(0, rot, 2, dtype=np.float32) / rot)
    inv = np.stack([(1.0 / (base * (1.0 + 0.5 * i))).astype(np.float32) for i in range(layers)])   # [L, ROT/2]
    caches = [(rand(rng, layers, hk, CTX, d), rand(rng, layers, hk, CTX, d)) for _ in range(n)]
    return q, k, v, inv, caches


@pytest.mark.parametrize("hq,hk,d,rot", [(9, 3, 64, 64), (4, 1, 48, 32), (4, 2, 80, 80)])
@pytest.mark.parametrize("pos", [0, 1, 37, 300])
@pytest.mark.parametrize("splits", [1, 3])
def test_decode_with_fused_rope_and_append_matches_twins(device, rng, hq, hk, d, rot, pos, splits):
    from engine.reference.rope import rope as ref_rope
    layer, rope_layer, q_scale = 1, 2, (1.0 if d != 48 else 1.3)
    window = 50 if hk == 2 else 0
    q, k, v, inv, [(kc, vc)] = _fused_case(rng, 1, hq, hk, d, rot)
    bufs = [device.buffer(x) for x in (q, k, v, kc, vc)]
    out, step = device.buffer((1, hq, d)), device.buffer(pack_step(pos=pos, n_tokens=1))
    rec = device.recorder()
    attention(rec, out, *bufs, step, n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5, layer=layer,
              window=window, splits=splits, rope=(device.buffer(inv, kind="const"), rope_layer, q_scale))
    rec.finish().run()
    rq, rk = ref_rope(q, k, inv[rope_layer], pos, 1, q_scale=q_scale)
    want = ref_attention(rq, rk, v, kc[layer], vc[layer], pos, 1, n_heads=hq, n_kv_heads=hk, head_dim=d,
                         scale=d ** -0.5, window=window)
    got = out.read().reshape(q.shape)
    assert _err(got, want, np.abs(v).max()) < TOL, (pos, splits)
    if pos:   # the unrotated answer is far off: the rotation really happened
        plain = ref_attention(q, k, v, kc[layer], vc[layer], pos, 1, n_heads=hq, n_kv_heads=hk, head_dim=d,
                              scale=d ** -0.5, window=window)
        assert _err(got, plain, np.abs(v).max()) > 1e-3
    want_kc, want_vc = ref_kv_append(kc[layer], vc[layer], rk, v, pos, 1)
    got_kc, got_vc = (b.read().reshape(kc.shape) for b in bufs[3:5])
    assert np.abs(got_kc[layer] - want_kc).max() < 1e-6 * np.abs(k).max() * 4
    np.testing.assert_array_equal(got_vc[layer], want_vc)                      # a copy: exact
    np.testing.assert_array_equal(np.delete(got_kc, layer, 0), np.delete(kc, layer, 0))
    np.testing.assert_array_equal(np.delete(got_vc, layer, 0), np.delete(vc, layer, 0))
    np.testing.assert_array_equal(got_kc[layer][:, np.arange(CTX) != pos], kc[layer][:, np.arange(CTX) != pos])
    np.testing.assert_array_equal(q, bufs[0].read().reshape(q.shape))       # q and k are left unrotated
    np.testing.assert_array_equal(k, bufs[1].read().reshape(k.shape))


@pytest.mark.parametrize("hq,hk,d,rot", [(9, 3, 64, 64), (4, 2, 80, 48)])
@pytest.mark.parametrize("pos", [0, 37, 300])
@pytest.mark.parametrize("splits", [1, 3])
def test_two_stream_decode_with_fused_rope_matches_twins(device, rng, hq, hk, d, rot, pos, splits):
    from engine.reference.attention import attention_dual, kv_append_dual
    from engine.reference.rope import rope as ref_rope
    q, k, v, inv, caches = _fused_case(rng, 2, hq, hk, d, rot, layers=1)
    caches = [(a[0], b[0]) for a, b in caches]
    bufs = [device.buffer(x) for x in (q, k, v)]
    cbufs = [(device.buffer(a), device.buffer(b)) for a, b in caches]
    out, step = device.buffer((2, hq, d)), device.buffer(pack_step(pos=pos, n_tokens=2))
    rec = device.recorder()
    attention(rec, out, *bufs, *cbufs[0], step, n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5,
              second=cbufs[1], splits=splits, rope=(device.buffer(inv, kind="const"), 0, 1.0))
    rec.finish().run()
    rq, rk = ref_rope(q, k, inv[0], pos, 2, dual=True)
    want = attention_dual(rq, rk, v, caches, pos, n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5)
    assert _err(out.read().reshape(q.shape), want, np.abs(v).max()) < TOL
    for (kb, vb), (wk, wv) in zip(cbufs, kv_append_dual(caches, rk, v, pos)):
        assert np.abs(kb.read().reshape(wk.shape) - wk).max() < 1e-6 * np.abs(k).max() * 4
        np.testing.assert_array_equal(vb.read().reshape(wv.shape), wv)


def test_fused_rope_is_a_one_token_decode_form(device, rng):
    q, k, v, inv, _ = _fused_case(rng, 3, 4, 2, 16, 16, layers=1)
    bufs = [device.buffer(x) for x in (q, k, v)] + list(kv_cache_buffers(device, CTX, 2, 16))
    out, step = device.buffer((3, 4, 16)), device.buffer(pack_step(pos=0, n_tokens=3))
    table = device.buffer(inv, kind="const")
    with pytest.raises(VkharpError, match="one token"):
        attention(device.recorder(), out, *bufs, step, n_heads=4, n_kv_heads=2, head_dim=16, scale=0.25,
                  rope=(table, 0, 1.0))
    one = [device.buffer(x[:1]) for x in (q, k, v)] + bufs[3:]
    with pytest.raises(VkharpError, match="one token"):
        attention(device.recorder(), device.buffer((1, 4, 16)), *one, step, n_heads=4, n_kv_heads=2, head_dim=16,
                  scale=0.25, variant="prefill", rope=(table, 0, 1.0))
    with pytest.raises(VkharpError, match="not in inv_freq's 1 stacked"):
        attention(device.recorder(), device.buffer((1, 4, 16)), *one, step, n_heads=4, n_kv_heads=2, head_dim=16,
                  scale=0.25, rope=(table, 1, 1.0))
    with pytest.raises(VkharpError, match="q_scale"):
        attention(device.recorder(), device.buffer((1, 4, 16)), *one, step, n_heads=4, n_kv_heads=2, head_dim=16,
                  scale=0.25, rope=(table, 0, 0.0))
