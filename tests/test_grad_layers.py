"""The training layers' backward kernels (issue 14, part 1): each shader against its numpy twin on odd
sizes, and each twin against torch autograd (float64) on the corresponding torch forward, so that the
backward math is proven and not only its port."""
import numpy as np
import pytest

from engine import ops, reference
from engine.errors import VkharpError
from engine.params import pack_step
from engine.reference.rope import rope_angles
from models.rope import rope_inv_freq
from util import max_rel_err, rand

torch = pytest.importorskip("torch")
F = torch.nn.functional
sliding_window_overlay = pytest.importorskip("transformers.masking_utils").sliding_window_overlay

# Twin against torch: both float64 inside, the twin's result rounded once to f32: 6e-8 of max|want|
# (measured <= 5e-8; the bar is NMSE <= 1e-6, far looser).
TWIN_TOL = 1e-6


def _t(a):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=True)


def _grads(y, dy, *xs):
    """Gradients of sum(y * dy) w.r.t. xs (the vector-Jacobian product a backward kernel computes)."""
    (y * torch.tensor(np.asarray(dy, np.float64))).sum().backward()
    return [x.grad.numpy() for x in xs]


def _run(device, fn):
    rec = device.recorder()
    fn(rec)
    rec.finish().run()


# --- RMSNorm ---------------------------------------------------------------------------------------------
# f32 sums of D (dx) or ROWS (dweight) terms in another order, each a product of 3-4 roundings: ~1e-6 of the
# largest element for D <= 1001; 1e-5 leaves margin (as tests/test_norm.py; measured <= 1.5e-7).
NORM_TOL = 1e-5


@pytest.mark.parametrize("shape", [(5, 7), (3, 1001), (7, 3, 24)])     # (7, 3, 24): qk_norm's [T, H, head_dim]
@pytest.mark.parametrize("accumulate", [False, True])
def test_rmsnorm_back_matches_twin(device, rng, shape, accumulate):
    d = shape[-1]
    x, dy, dx0 = rand(rng, *shape), rand(rng, *shape), rand(rng, *shape)
    w = np.stack([rand(rng, d), rand(rng, d)])          # layer-stacked [L, D]: layer 1 is used
    dw0 = rand(rng, d)
    dxb, dwb = device.buffer(dx0), device.buffer(dw0)
    _run(device, lambda rec: ops.rmsnorm_back(rec, dxb, device.buffer(x), device.buffer(w, kind="const"),
                                              device.buffer(dy), eps=1e-6, layer=1, accumulate=accumulate,
                                              dweight=dwb, dweight_accumulate=accumulate))
    want_dx, want_dw = reference.rmsnorm_back(x, w[1], dy, eps=1e-6)
    if accumulate:
        want_dx, want_dw = want_dx + dx0, want_dw + dw0
    assert max_rel_err(dxb.read().reshape(shape), want_dx) < NORM_TOL
    assert max_rel_err(dwb.read(), want_dw) < NORM_TOL


@pytest.mark.parametrize("shape", [(5, 7), (4, 3, 16)])
def test_rmsnorm_back_twin_matches_torch(rng, shape):
    x, w, dy = rand(rng, *shape, scale=2.0), rand(rng, shape[-1]), rand(rng, *shape)
    xt, wt = _t(x), _t(w)
    y = xt * torch.rsqrt((xt * xt).mean(-1, keepdim=True) + 1e-5) * wt
    gx, gw = _grads(y, dy, xt, wt)
    dx, dw = reference.rmsnorm_back(x, w, dy, eps=1e-5)
    assert max_rel_err(dx, gx) < TWIN_TOL and max_rel_err(dw, gw) < TWIN_TOL


def test_rmsnorm_back_bad_input(device):
    rec = device.recorder()
    x = device.buffer((3, 8))
    with pytest.raises(VkharpError, match="own buffer"):
        ops.rmsnorm_back(rec, x, x, device.buffer(8), device.buffer((3, 8)), eps=1e-5)
    with pytest.raises(VkharpError, match="dweight"):
        ops.rmsnorm_back(rec, device.buffer((3, 8)), x, device.buffer(8), device.buffer((3, 8)), eps=1e-5,
                         dweight=device.buffer(7))


# --- RoPE --------------------------------------------------------------------------------------------------
ROPE_TOL = 1e-6   # the forward's error budget (tests/test_rope.py): the same sin/cos and two roundings


@pytest.mark.parametrize("style", ["half", "interleaved"])
@pytest.mark.parametrize("partial,q_scale", [(1.0, 1.0), (0.5, 1.7)])
def test_rope_back_matches_twin(device, rng, style, partial, q_scale):
    n, n_valid, hq, hk, d, pos = 7, 6, 5, 1, 20, 3
    dq, dk = rand(rng, n, hq, d), rand(rng, n, hk, d)
    inv = rope_inv_freq(d, 10000.0, partial_rotary_factor=partial)
    dqb, dkb = device.buffer(dq), device.buffer(dk)
    step = device.buffer(pack_step(pos=pos, n_tokens=n_valid))
    _run(device, lambda rec: ops.rope_back(rec, dqb, dkb, device.buffer(inv, kind="const"), step, style=style,
                                           q_scale=q_scale))
    want_q, want_k = reference.rope_back(dq, dk, inv, pos, n_valid, style=style, q_scale=q_scale)
    got_q, got_k = dqb.read().reshape(dq.shape), dkb.read().reshape(dk.shape)
    assert max_rel_err(got_q, want_q) < ROPE_TOL and max_rel_err(got_k, want_k) < ROPE_TOL
    np.testing.assert_array_equal(got_q[n_valid:], dq[n_valid:])          # rows past P_NTOK: untouched


def test_rope_back_undoes_rope(device, rng):
    """With q_scale 1 the backward is the inverse rotation: rope then rope_back gives q, k back."""
    q, k = rand(rng, 9, 3, 16), rand(rng, 9, 1, 16)
    inv = device.buffer(rope_inv_freq(16, 10000.0), kind="const")
    qb, kb, step = device.buffer(q), device.buffer(k), device.buffer(pack_step(pos=0, n_tokens=9))

    def prog(rec):
        ops.rope(rec, qb, kb, inv, step)
        ops.rope_back(rec, qb, kb, inv, step)
    _run(device, prog)
    assert max_rel_err(qb.read().reshape(q.shape), q) < ROPE_TOL
    assert max_rel_err(kb.read().reshape(k.shape), k) < ROPE_TOL


@pytest.mark.parametrize("style", ["half", "interleaved"])
def test_rope_back_twin_matches_torch(rng, style):
    n, hq, hk, d, pos, q_scale = 6, 3, 2, 12, 40, 1.3
    inv = rope_inv_freq(d, 10000.0, partial_rotary_factor=2 / 3)       # 8 of 12 dims rotated
    rot = 2 * len(inv)
    a = torch.tensor(rope_angles(pos + np.arange(n), inv).astype(np.float64))[:, None]
    cos, sin = torch.cos(a), torch.sin(a)
    i0, i1 = ((np.arange(rot // 2), np.arange(rot // 2) + rot // 2) if style == "half"
              else (np.arange(0, rot, 2), np.arange(1, rot, 2)))

    def fwd(x, f):
        y = x.clone()
        x0, x1 = x[..., i0], x[..., i1]
        y[..., i0] = f * (x0 * cos - x1 * sin)
        y[..., i1] = f * (x1 * cos + x0 * sin)
        return y

    q, k, gq_out, gk_out = rand(rng, n, hq, d), rand(rng, n, hk, d), rand(rng, n, hq, d), rand(rng, n, hk, d)
    qt, kt = _t(q), _t(k)
    (fwd(qt, q_scale) * torch.tensor(gq_out.astype(np.float64))).sum().backward()
    (fwd(kt, 1.0) * torch.tensor(gk_out.astype(np.float64))).sum().backward()
    dq, dk = reference.rope_back(gq_out, gk_out, inv, pos, n, style=style, q_scale=q_scale)
    assert max_rel_err(dq, qt.grad.numpy()) < TWIN_TOL and max_rel_err(dk, kt.grad.numpy()) < TWIN_TOL


# --- SwiGLU / GeGLU ----------------------------------------------------------------------------------------
# A handful of f32 operations around one exp (Vulkan: 3 + 2|x| ulp, ~1e-6 at |x| ~ 8): ~2e-6 of max; 1e-5
# (measured <= 9e-8).
GLU_TOL = 1e-5


@pytest.mark.parametrize("act", ["silu", "gelu_tanh"])
def test_glu_back_matches_twin(device, rng, act):
    shape = (3, 333)
    gate, up, dm = rand(rng, *shape, scale=4.0), rand(rng, *shape), rand(rng, *shape)
    gate[0, :4] = [-120.0, 120.0, -12.0, 30.0]          # the far tails: no inf, no NaN
    dg, du = device.buffer(shape), device.buffer(shape)
    _run(device, lambda rec: ops.glu_back(rec, dg, du, device.buffer(gate), device.buffer(up), device.buffer(dm),
                                          act=act))
    want_g, want_u = reference.glu_back(gate, up, dm, act=act)
    got_g, got_u = dg.read().reshape(shape), du.read().reshape(shape)
    assert np.isfinite(got_g).all() and np.isfinite(got_u).all()
    assert max_rel_err(got_g, want_g) < GLU_TOL and max_rel_err(got_u, want_u) < GLU_TOL


@pytest.mark.parametrize("act", ["silu", "gelu_tanh"])
def test_glu_back_twin_matches_torch(rng, act):
    gate, up, dm = rand(rng, 5, 17, scale=4.0), rand(rng, 5, 17), rand(rng, 5, 17)
    gt, ut = _t(gate), _t(up)
    a = F.silu(gt) if act == "silu" else F.gelu(gt, approximate="tanh")
    gg, gu = _grads(a * ut, dm, gt, ut)
    dg, du = reference.glu_back(gate, up, dm, act=act)
    assert max_rel_err(dg, gg) < TWIN_TOL and max_rel_err(du, gu) < TWIN_TOL


def test_glu_back_bad_act(device):
    b = device.buffer(4)
    with pytest.raises(VkharpError, match="act must be"):
        ops.glu_back(device.recorder(), device.buffer(4), device.buffer(4), b, b, b, act="relu")


# --- attention over the sequence ---------------------------------------------------------------------------
# Forward: as tests/test_attention.py (error relative to max|v|: scores are f32 dots of D terms, exp 3 + 2|x|
# ulp, sums of <= T weights): ~6e-6; 2e-5. Backward, relative to the largest gradient element: dS = P (dP -
# delta) cancels where dP ~ delta (each ~ max|v| |dout| ~ sqrt(D)), so its absolute error is that of dP and
# delta (sums of D f32 products, ~1e-6 of them) times P; dq, dk, dv are sums of <= T*G such terms: ~1e-5 of
# max; 5e-5 leaves margin (measured: <= 1.1e-6 forward and backward). A wrong mask (one key too many) or
# head moves them by O(1e-2) or more.
ATT_TOL, ATT_BACK_TOL = 2e-5, 5e-5
# (T, HQ, HK, D, window, softcap, (wg, tile)): GQA, multi-query, windows, Gemma 2's capping, rows past one
# group and one tile, partial tiles and groups
ATT_CASES = [(13, 4, 2, 20, 0, 0.0, (64, None)), (11, 3, 1, 12, 4, 0.0, (8, 4)), (9, 2, 2, 16, 0, 2.0, (32, 2)),
             (70, 2, 1, 40, 0, 0.0, (32, None)), (37, 6, 3, 8, 9, 3.0, (16, 8)),
             (21, 4, 1, 256, 8, 50.0, (None, None))]     # Gemma 2's head_dim, cap and a window; default layout


class Seq:
    def __init__(self, rng, t, hq, hk, d, window, softcap):
        self.kw = dict(n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5, window=window, softcap=softcap)
        self.q, self.k, self.v = rand(rng, t, hq, d, scale=3.0), rand(rng, t, hk, d), rand(rng, t, hk, d)
        self.dout = rand(rng, t, hq, d)


@pytest.mark.parametrize("t,hq,hk,d,window,softcap,layout", ATT_CASES)
def test_attention_seq_and_back_match_twins(device, rng, t, hq, hk, d, window, softcap, layout):
    wg, tile = layout
    c = Seq(rng, t, hq, hk, d, window, softcap)
    qb, kb, vb, dob = (device.buffer(a) for a in (c.q, c.k, c.v, c.dout))
    out, lse = device.buffer((t, hq, d)), device.buffer((t, hq))
    dq, dk, dv = device.buffer((t, hq, d)), device.buffer((t, hk, d)), device.buffer((t, hk, d))

    def prog(rec):
        ops.attention_seq(rec, out, lse, qb, kb, vb, wg=wg, tile=tile, **c.kw)
        ops.attention_back(rec, dq, dk, dv, qb, kb, vb, out, lse, dob, wg=wg, tile=tile, **c.kw)
    _run(device, prog)
    want_out, want_lse = reference.attention_seq(c.q, c.k, c.v, **c.kw)
    got_out = out.read().reshape(t, hq, d)
    assert max_rel_err(got_out, want_out) * np.abs(want_out).max() / np.abs(c.v).max() < ATT_TOL
    assert np.max(np.abs(lse.read().reshape(t, hq) - want_lse)) < ATT_TOL * np.abs(want_lse).max()
    # the same values as the inference attention (an empty cache, the chunk at position 0)
    empty = np.zeros((1, hk, d), np.float32)
    infer = reference.attention(c.q, c.k, c.v, empty, empty, 0, t, **c.kw)
    assert np.max(np.abs(got_out - infer)) / np.abs(c.v).max() < ATT_TOL
    # the backward from the shader's own out and lse, as the training graph runs it
    want = reference.attention_back(c.q, c.k, c.v, got_out, lse.read().reshape(t, hq), c.dout, **c.kw)
    for got, w, shape in zip((dq, dk, dv), want, ((t, hq, d), (t, hk, d), (t, hk, d))):
        assert max_rel_err(got.read().reshape(shape), w) < ATT_BACK_TOL


def test_attention_seq_matches_inference_shader(device, rng):
    """ops.attention_seq and ops.attention (prefill of the whole sequence at position 0) agree."""
    t, hq, hk, d = 12, 4, 2, 16
    c = Seq(rng, t, hq, hk, d, 5, 4.0)
    qb, kb, vb = (device.buffer(a) for a in (c.q, c.k, c.v))
    out, lse, inf_out = device.buffer((t, hq, d)), device.buffer((t, hq)), device.buffer((t, hq, d))
    kc, vc = ops.kv_cache_buffers(device, 16, hk, d, name="seqtest")
    step = device.buffer(pack_step(pos=0, n_tokens=t))

    def prog(rec):
        ops.attention_seq(rec, out, lse, qb, kb, vb, **c.kw)
        ops.attention(rec, inf_out, qb, kb, vb, kc, vc, step, **c.kw)
    _run(device, prog)
    assert np.max(np.abs(out.read() - inf_out.read())) / np.abs(c.v).max() < ATT_TOL


def _torch_attention(q, k, v, n_heads, n_kv_heads, head_dim, scale, window, softcap):
    g = n_heads // n_kv_heads
    kh, vh = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)        # [T, H, D]
    s = scale * torch.einsum("ihd,jhd->hij", q, kh)
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    t = q.shape[0]
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    visible = j <= i
    if window:   # transformers' own sliding-window rule (masking_utils), on top of the causal mask
        visible = visible & sliding_window_overlay(window)(0, 0, i, j)
    p = torch.softmax(s.masked_fill(~visible, float("-inf")), dim=-1)
    return torch.einsum("hij,jhd->ihd", p, vh), torch.logsumexp(s.masked_fill(~visible, float("-inf")), -1).T


@pytest.mark.parametrize("t,hq,hk,d,window,softcap,layout", ATT_CASES[:3] + ATT_CASES[4:])
def test_attention_twins_match_torch(rng, t, hq, hk, d, window, softcap, layout):
    c = Seq(rng, t, hq, hk, d, window, softcap)
    qt, kt, vt = _t(c.q), _t(c.k), _t(c.v)
    out_t, lse_t = _torch_attention(qt, kt, vt, **c.kw)
    out, lse = reference.attention_seq(c.q, c.k, c.v, **c.kw)
    assert max_rel_err(out, out_t.detach().numpy()) < TWIN_TOL
    assert max_rel_err(lse, lse_t.detach().numpy()) < TWIN_TOL
    gq, gk, gv = _grads(out_t, c.dout, qt, kt, vt)
    # the twin's backward from float64 forward values (its own f32 out and lse would add their rounding)
    dq, dk, dv = reference.attention_back(c.q, c.k, c.v, out_t.detach().numpy(), lse_t.detach().numpy(), c.dout,
                                          **c.kw)
    for got, want in ((dq, gq), (dk, gk), (dv, gv)):
        assert max_rel_err(got, want) < TWIN_TOL


def test_attention_seq_bad_input(device):
    rec = device.recorder()
    q, k = device.buffer((4, 2, 8)), device.buffer((4, 1, 8))
    with pytest.raises(VkharpError, match="multiple"):
        ops.attention_seq(rec, device.buffer((4, 2, 8)), device.buffer((4, 2)), q, k, k, n_heads=2, n_kv_heads=3,
                          head_dim=8, scale=1.0)
    with pytest.raises(VkharpError, match="multiple of 4"):
        ops.attention_seq(rec, device.buffer((4, 2, 6)), device.buffer((4, 2)), device.buffer((4, 2, 6)),
                          device.buffer((4, 1, 6)), device.buffer((4, 1, 6)), n_heads=2, n_kv_heads=1, head_dim=6,
                          scale=1.0)
    with pytest.raises(VkharpError, match="lse"):
        ops.attention_seq(rec, device.buffer((4, 2, 8)), device.buffer((4, 1)), q, k, k, n_heads=2, n_kv_heads=1,
                          head_dim=8, scale=1.0)


# --- soft-capping, embedding -------------------------------------------------------------------------------
# softcap_back: three f32 operations on each element: a few ulps of max. embed_back: sums of <= 3 matches,
# in the twin's order: a few roundings.
ELEM_TOL = 1e-6


@pytest.mark.parametrize("in_place", [False, True])
def test_softcap_back_matches_twin(device, rng, in_place):
    cap, x, dy = 7.5, rand(rng, 3, 301, scale=10.0), rand(rng, 3, 301)
    y = reference.softcap(x, cap=cap)
    yb, dyb = device.buffer(y), device.buffer(dy)
    dxb = dyb if in_place else device.buffer(dy.shape)
    _run(device, lambda rec: ops.softcap_back(rec, dxb, yb, dyb, cap=cap))
    assert max_rel_err(dxb.read().reshape(dy.shape), reference.softcap_back(y, dy, cap=cap)) < ELEM_TOL


def test_softcap_back_twin_matches_torch(rng):
    cap, x, dy = 5.0, rand(rng, 4, 9, scale=6.0), rand(rng, 4, 9)
    xt = _t(x)
    y = cap * torch.tanh(xt / cap)
    (gx,) = _grads(y, dy, xt)
    # from the f32-rounded y, as the device holds it: its rounding (6e-8 relative) moves 1 - (y/cap)^2 by
    # ~1.2e-7 / (1 - (y/cap)^2) relative; the inputs stay below |y/cap| ~ 0.99 here.
    assert max_rel_err(reference.softcap_back(y.detach().numpy().astype(np.float32), dy, cap=cap), gx) < 2e-5


@pytest.mark.parametrize("accumulate", [False, True])
def test_embed_back_matches_twin(device, rng, accumulate):
    vocab, h = 23, 70
    ids = np.array([3, 7, 3, 22, 0, 7, 23, 3, 11, 5], np.uint32)   # 23: past the vocab, skipped
    dx, d0 = rand(rng, ids.size, h), rand(rng, vocab, h)
    dtb = device.buffer(d0)
    _run(device, lambda rec: ops.embed_back(rec, dtb, device.buffer(ids), device.buffer(dx), scale=1.5,
                                            accumulate=accumulate, wg=32))
    want = reference.embed_back(ids, dx, vocab=vocab, scale=1.5) + (d0 if accumulate else 0)
    assert max_rel_err(dtb.read().reshape(vocab, h), want) < ELEM_TOL


def test_embed_back_twin_matches_torch(rng):
    vocab, h, scale = 11, 6, 2.5
    ids = np.array([1, 4, 1, 10, 1, 0], np.uint32)
    table, dx = rand(rng, vocab, h), rand(rng, ids.size, h)
    tt = _t(table)
    (gt,) = _grads(F.embedding(torch.tensor(ids.astype(np.int64)), tt) * scale, dx, tt)
    assert max_rel_err(reference.embed_back(ids, dx, vocab=vocab, scale=scale), gt) < TWIN_TOL


def test_backward_kernels_are_deterministic(device, rng):
    """Replays give the same bits: every sum has one owner and a fixed order (no float atomics)."""
    t, hq, hk, d, vocab = 45, 4, 2, 16, 9
    c = Seq(rng, t, hq, hk, d, 0, 0.0)
    qb, kb, vb, dob = (device.buffer(a) for a in (c.q, c.k, c.v, c.dout))
    out, lse = device.buffer((t, hq, d)), device.buffer((t, hq))
    grads = [device.buffer((t, hq, d)), device.buffer((t, hk, d)), device.buffer((t, hk, d))]
    x, dy = rand(rng, t, 64), rand(rng, t, 64)
    dx, dw, dtab = device.buffer((t, 64)), device.buffer(64), device.buffer((vocab, 64))
    ids = device.buffer(rng.integers(0, vocab, t).astype(np.uint32))
    rec = device.recorder()
    ops.attention_seq(rec, out, lse, qb, kb, vb, **c.kw)
    ops.attention_back(rec, *grads, qb, kb, vb, out, lse, dob, **c.kw)
    ops.rmsnorm_back(rec, dx, device.buffer(x), device.buffer(rand(rng, 64)), device.buffer(dy), eps=1e-6, dweight=dw)
    ops.embed_back(rec, dtab, ids, device.buffer(dy))
    prog = rec.finish()
    results = []
    for _ in range(2):
        prog.run()
        results.append([b.read() for b in (*grads, dx, dw, dtab)])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_twins_chain_into_a_gemma3_layer_backward(rng):
    """The twins composed by hand into the backward of one whole layer with every option at once (qk_norm,
    rope's q_scale, a window, soft-capping, sandwich norms, GeGLU; numpy products between them) give torch
    autograd's gradients of the layer input and of a norm weight: the conventions compose. Each twin rounds
    its result to f32 once, a dozen roundings in a chain: ~1e-6 of max; 1e-5."""
    t, h, hq, hk, d, f = 11, 32, 4, 2, 8, 24
    eps, window, cap, q_scale = 1e-6, 5, 20.0, 1.2
    inv = rope_inv_freq(d, 10000.0)
    kw = dict(n_heads=hq, n_kv_heads=hk, head_dim=d, scale=d ** -0.5, window=window, softcap=cap)
    W = {n: rand(rng, *s, scale=0.3) for n, s in dict(q=(hq * d, h), k=(hk * d, h), v=(hk * d, h), o=(h, hq * d),
                                                     g=(f, h), u=(f, h), dn=(h, f)).items()}
    N = {n: 1.0 + rand(rng, s, scale=0.2) for n, s in dict(inp=h, qn=d, kn=d, post=h, pre=h, post2=h).items()}
    x, dy = rand(rng, t, h), rand(rng, t, h)

    # torch, float64
    Wt, Nt, xt = {n: torch.tensor(a.astype(np.float64)) for n, a in W.items()}, \
        {n: _t(a) for n, a in N.items()}, _t(x)

    def rms(a, w):
        return a * torch.rsqrt((a * a).mean(-1, keepdim=True) + eps) * w

    ang = torch.tensor(rope_angles(np.arange(t), inv).astype(np.float64))[:, None]
    cos, sin = torch.cos(ang), torch.sin(ang)

    def rot(a, s):
        a0, a1 = a[..., :d // 2], a[..., d // 2:]
        return s * torch.cat([a0 * cos - a1 * sin, a1 * cos + a0 * sin], -1)

    xn = rms(xt, Nt["inp"])
    qt = rot(rms((xn @ Wt["q"].T).reshape(t, hq, d), Nt["qn"]), q_scale)
    kt = rot(rms((xn @ Wt["k"].T).reshape(t, hk, d), Nt["kn"]), 1.0)
    vt = (xn @ Wt["v"].T).reshape(t, hk, d)
    att, _ = _torch_attention(qt, kt, vt, **kw)
    ht = xt + rms(att.reshape(t, -1) @ Wt["o"].T, Nt["post"])
    hn = rms(ht, Nt["pre"])
    mt = F.gelu(hn @ Wt["g"].T, approximate="tanh") * (hn @ Wt["u"].T)
    yt = ht + rms(mt @ Wt["dn"].T, Nt["post2"])
    gx, gqn, gpost2 = _grads(yt, dy, xt, Nt["qn"], Nt["post2"])

    # the twins, forward then backward
    R = reference
    xn = R.rmsnorm(x, N["inp"], eps=eps)
    q0, k0, v = (xn @ W["q"].T).reshape(t, hq, d), (xn @ W["k"].T).reshape(t, hk, d), (xn @ W["v"].T).reshape(t, hk, d)
    q1, k1 = R.rmsnorm(q0, N["qn"], eps=eps), R.rmsnorm(k0, N["kn"], eps=eps)
    q, k = R.rope(q1, k1, inv, 0, t, q_scale=q_scale)
    out, lse = R.attention_seq(q, k, v, **kw)
    o = out.reshape(t, -1) @ W["o"].T
    hh = x + R.rmsnorm(o, N["post"], eps=eps)
    hn = R.rmsnorm(hh, N["pre"], eps=eps)
    g, u = hn @ W["g"].T, hn @ W["u"].T
    dn = R.geglu(g, u) @ W["dn"].T

    d_dn, dpost2 = R.rmsnorm_back(dn, N["post2"], dy, eps=eps)
    dg, du = R.glu_back(g, u, d_dn @ W["dn"], act="gelu_tanh")
    dh = dy + R.rmsnorm_back(hh, N["pre"], dg @ W["g"] + du @ W["u"], eps=eps)[0]
    d_o, _ = R.rmsnorm_back(o, N["post"], dh, eps=eps)
    dq, dk, dv = R.attention_back(q, k, v, out, lse, (d_o @ W["o"]).reshape(t, hq, d), **kw)
    dq1, dk1 = R.rope_back(dq, dk, inv, 0, t, q_scale=q_scale)
    dq0, dqn = R.rmsnorm_back(q0, N["qn"], dq1, eps=eps)
    dk0, _ = R.rmsnorm_back(k0, N["kn"], dk1, eps=eps)
    dxn = dq0.reshape(t, -1) @ W["q"] + dk0.reshape(t, -1) @ W["k"] + dv.reshape(t, -1) @ W["v"]
    dx = dh + R.rmsnorm_back(x, N["inp"], dxn, eps=eps)[0]
    for got, want in ((dx, gx), (dqn, gqn), (dpost2, gpost2)):
        assert max_rel_err(got, want) < 1e-5
