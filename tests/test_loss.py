"""shaders/loss.comp against engine/reference/loss.py for every rule, the twin's gradient against torch
autograd of the same losses written in torch, the stats (mismatch count, first mismatch, predictions),
and the zero-gradient promises (no mismatch; position-edit at the start)."""
import importlib

import numpy as np
import pytest

from engine.errors import VkharpError
from engine.ops.loss import loss

R = importlib.import_module("engine.reference.loss")   # (engine.reference.loss is also the twin's function)
from util import max_rel_err

# Gradients: p = exp(z - m - log S) in f32, where |z - m - log S| <= ~50 here, costs ~50 * 6e-8 = 3e-6
# relative per value; sums over V in another order than the twin's float64 add ~1e-6. 2e-5 of the
# largest |gradient| leaves margin and still catches a wrong term (each term is >= 1/V of it).
TOL = 2e-5
# The loss: f32 sums of T row terms, each ~1e-6 relative: 1e-5.
LOSS_TOL = 1e-5
RULES = list(R.RULES)
SHAPES = [(1, 5), (7, 1001), (33, 4099)]


def _case(rng, T, V, scale=3.0, matched=2):
    """Random logits, targets (the first `matched` rows predicted right), weights (row 3 masked),
    base logits near the logits and edits of every kind (none, argmax, a token, the target itself)."""
    z = (rng.standard_normal((T, V)) * scale).astype(np.float32)
    y = rng.integers(0, V, T).astype(np.uint32)
    top = np.argmax(z, -1)
    y = np.where(y == top, (y + 1) % V, y).astype(np.uint32)      # the other rows mismatch
    y[:matched] = top[:matched]
    w = rng.uniform(0.5, 2.0, T).astype(np.float32)
    if T > 3:
        w[3] = 0.0
    b = (z + rng.standard_normal((T, V)) * 0.5).astype(np.float32)
    ed = np.full(T, R.EDIT_NONE, np.uint32)
    for t, kind in zip(range(T), [None, None, R.EDIT_ARGMAX, R.EDIT_ARGMAX, 17 % V, "y", R.EDIT_ARGMAX]):
        if t >= 2 and kind is not None:
            ed[t] = y[t] if kind == "y" else kind
    return z, y, w, b, ed


class Runner:
    """One recorded program per (rule, shape, wg), kept for the module (lavapipe compiles for seconds)."""

    def __init__(self, device):
        self.device, self.progs = device, {}

    def __call__(self, z, y, w, rule, b=None, ed=None, wg=None, margin=R.DEFAULT_MARGIN, pred=True, hold=0.0):
        T, V = z.shape
        key = (rule, T, V, wg, margin, pred, hold)
        if key not in self.progs:
            d = self.device
            bufs = dict(dz=d.buffer((T, V)), st=d.buffer(R.STAT_WORDS + T * pred, np.uint32),
                        z=d.buffer((T, V)), y=d.buffer(T, np.uint32), w=d.buffer(T), b=d.buffer((T, V)),
                        ed=d.buffer(T, np.uint32))
            rec = d.recorder()
            extra = dict(base=bufs["b"], edits=bufs["ed"]) if rule == "position-edit" else {}
            loss(rec, bufs["dz"], bufs["st"], bufs["z"], bufs["y"], bufs["w"], rule=rule, wg=wg, margin=margin, hold=hold,
                 **extra)
            self.progs[key] = (rec.finish(), bufs)
        prog, bufs = self.progs[key]
        bufs["z"].write(z); bufs["y"].write(y); bufs["w"].write(w)
        if rule == "position-edit":
            bufs["b"].write(b); bufs["ed"].write(ed)
        prog.run()
        return bufs["dz"].read().reshape(T, V), R.unpack_stats(bufs["st"].read(), T)


@pytest.fixture(scope="module")
def run(device):
    return Runner(device)


def _ref(z, y, w, rule, b, ed, **kw):
    extra = dict(base=b, edits=ed) if rule == "position-edit" else {}
    return R.loss(z, y, w, rule=rule, **extra, **kw)


def _grad_err(g, g_ref, z, y, w, rule, b, ed):
    """max_rel_err, except for position-edit: g = c (p - q) cancels where the model agrees with its
    base, so its f32 error is relative to c · max(p, q) (each rounded on its own), not to |p - q|."""
    if rule != "position-edit":
        return max_rel_err(g, g_ref)
    p = np.exp(z - z.max(-1, keepdims=True).astype(np.float64))
    p /= p.sum(-1, keepdims=True)
    c = np.where(w > 0, w, 0) / w.sum()
    scale = np.max(c[:, None] * np.maximum(p, R.soft_targets(b, y, ed)))
    return max_rel_err(g, g_ref, floor=scale)


def _same_stats(got, want):
    assert (got.n_mismatch, got.first, got.counted, got.nonfinite) == (want.n_mismatch, want.first, want.counted,
                                                                      want.nonfinite)
    np.testing.assert_array_equal(got.pred, want.pred)
    assert abs(got.norm - want.norm) <= 1e-6 * max(1.0, abs(want.norm))
    assert abs(got.loss - want.loss) <= LOSS_TOL * max(1.0, abs(want.loss))


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("T,V", SHAPES)
def test_shader_matches_twin(run, rng, rule, T, V):
    z, y, w, b, ed = _case(rng, T, V, matched=min(2, T - 1))
    g, st = run(z, y, w, rule, b, ed)
    g_ref, st_ref = _ref(z, y, w, rule, b, ed)
    assert np.any(g_ref != 0)
    assert _grad_err(g, g_ref, z, y, w, rule, b, ed) < TOL
    _same_stats(st, st_ref)


@pytest.mark.parametrize("rule", ["first-mismatch", "position-edit", "ce"])
@pytest.mark.parametrize("wg", [32, 128])
def test_work_group_sizes(run, rng, rule, wg):
    z, y, w, b, ed = _case(rng, 5, 777)
    g, st = run(z, y, w, rule, b, ed, wg=wg)
    g_ref, st_ref = _ref(z, y, w, rule, b, ed)
    assert _grad_err(g, g_ref, z, y, w, rule, b, ed) < TOL
    _same_stats(st, st_ref)


@pytest.mark.parametrize("rule", ["first-mismatch", "position-edit", "target-only"])
def test_gemma_vocab_and_large_logits(run, rng, rule):
    """V = 262144 (Gemma) with logits of scale 30: the max subtraction keeps f32 finite."""
    z, y, w, b, ed = _case(rng, 3, 262144, scale=30.0, matched=1)
    g, st = run(z, y, w, rule, b, ed)
    g_ref, st_ref = _ref(z, y, w, rule, b, ed)
    assert np.all(np.isfinite(g))
    assert _grad_err(g, g_ref, z, y, w, rule, b, ed) < TOL
    _same_stats(st, st_ref)


def test_stats_and_no_predictions_buffer(run, rng):
    """Masked rows never count; the first mismatch is the first counted wrong row; a header-only
    stats buffer gets no predictions."""
    T, V = 9, 50
    z = (rng.standard_normal((T, V)) * 2).astype(np.float32)
    y = np.argmax(z, -1).astype(np.uint32)
    w = np.ones(T, np.float32)
    y[2] = (y[2] + 1) % V; w[2] = 0.0             # wrong but masked
    y[5] = (y[5] + 1) % V                         # the first counted mismatch
    y[7] = (y[7] + 3) % V
    _, st = run(z, y, w, "first-mismatch")
    assert (st.n_mismatch, st.first, st.counted) == (2, 5, 8)
    np.testing.assert_array_equal(st.pred, np.argmax(z, -1))
    _, st = run(z, y, w, "first-mismatch", pred=False)
    assert st.pred is None and (st.n_mismatch, st.first) == (2, 5)
    y[5] = np.argmax(z[5]); y[7] = np.argmax(z[7])
    _, st = run(z, y, w, "mismatch-only")
    assert (st.n_mismatch, st.first, st.loss) == (0, T, 0.0)


@pytest.mark.parametrize("rule", ["first-mismatch", "mismatch-only"])
def test_zero_gradient_when_nothing_mismatches(run, rng, rule):
    z, y, w, b, ed = _case(rng, 7, 1001, matched=7)
    w[3] = 0.0
    y[3] = (y[3] + 1) % 1001                       # a masked wrong row does not count
    g, st = run(z, y, w, rule)
    assert not np.any(g) and st.loss == 0.0 and st.first == 7 and st.n_mismatch == 0


def test_first_mismatch_touches_only_its_row(run, rng):
    z, y, w, b, ed = _case(rng, 7, 1001, matched=4)
    g, st = run(z, y, w, "first-mismatch")
    assert st.first == 4
    assert not np.any(np.delete(g, 4, axis=0)) and np.any(g[4])
    assert g[4, y[4]] < 0 < g[4, st.pred[4]]        # the expected token rises, the predicted one falls


def test_position_edit_is_still_at_the_start(run, rng):
    """z = base and no edits: q = softmax(base) = p, the gradient is exactly zero (same f32 path)."""
    z, y, w, b, ed = _case(rng, 6, 1001)
    g, _ = run(z, y, w, "position-edit", z.copy(), np.full(6, R.EDIT_NONE, np.uint32))
    assert not np.any(g)


def test_soft_targets():
    """The edited row: the wrong token gets 0, its mass goes to the wanted one, which is then raised
    to the margin above the strongest other token where the moved mass is not enough; q sums to 1;
    unedited rows are softmax(base)."""
    b = np.array([[2.0, 1.0, 0.5, -1.0], [2.0, 1.0, 0.5, -1.0], [2.0, 1.9, -3.0, -1.0], [0.0, 3.0, 0.2, 0.1]])
    y = np.array([2, 2, 2, 1])
    q = R.soft_targets(b, y, [R.EDIT_NONE, R.EDIT_ARGMAX, R.EDIT_ARGMAX, R.EDIT_ARGMAX], margin=0.1)
    pi = np.exp(b) / np.exp(b).sum(-1, keepdims=True)
    np.testing.assert_allclose(q[0], pi[0])
    np.testing.assert_allclose(q.sum(-1), 1.0)
    assert q[1, 0] == 0 and q[2, 0] == 0 and np.argmax(q[1]) == 2 and np.argmax(q[2]) == 2
    np.testing.assert_allclose(q[1], [0, pi[1, 1], pi[1, 0] + pi[1, 2], pi[1, 3]])   # the moved mass suffices
    Y = pi[2, 1] + 0.1                                                           # it does not: the margin
    assert pi[2, 0] + pi[2, 2] < Y
    Z = 1 - pi[2, 0] - pi[2, 2] + Y
    np.testing.assert_allclose(q[2], [0, pi[2, 1] / Z, Y / Z, pi[2, 3] / Z])
    np.testing.assert_allclose(q[3], pi[3])          # u = y = argmax, already the clear argmax
    with pytest.raises(VkharpError, match="not a token id"):
        R.soft_targets(b, y, [7, 0, 0, 0])


def test_span_weights():
    offsets = [(0, 2), (2, 5), (5, 5), (5, 9), (9, 12)]
    np.testing.assert_array_equal(R.span_weights(offsets, [(3, 6)], 4.0), [1, 4, 4, 4, 1])
    np.testing.assert_array_equal(R.span_weights([0, 2, 5, 5, 9, 12], [(0, 1), (11, 12)], 3.0, base=0.5),
                                  [3, 0.5, 0.5, 0.5, 3])
    with pytest.raises(VkharpError, match="ends before"):
        R.span_weights(offsets, [(4, 2)], 2.0)


def test_position_edit_targets_and_nonfinite_stats(run, rng):
    """The seed's example: said 1 2 3 4 5, wanted 1 2 0 4 5 → rows "1", "2", "0" (wrong: "3"), no more."""
    targets, edits = R.position_edit_targets([11, 12, 13, 14, 15], {2: 10})
    np.testing.assert_array_equal(targets, [11, 12, 10])
    np.testing.assert_array_equal(edits, [R.EDIT_NONE, R.EDIT_NONE, 13])
    with pytest.raises(VkharpError, match="within the answer"):
        R.position_edit_targets([1, 2], {2: 0})
    z, y, w, b, ed = _case(rng, 7, 1001)
    z[5, 9] = np.nan
    _, st = run(z, y, w, "ce")
    assert st.nonfinite == 1
    with pytest.raises(VkharpError, match="hold NaN or \\+inf"):
        st.check()


# -- hold: the target must lead by `hold` logits ------------------------------------------------
HOLD = 0.75
LEADS = [2.5, 0.4, 0.4, 0.4]      # × HOLD: row 0 holds, rows 1, 2 lead by a hair, row 3 too but is masked


def _hold_case(rng, T, V, rule, hold=HOLD):
    """_case with rows 0..3 predicted right (a = y) by a lead of LEADS[t] * hold (a hair, or clearly)
    in the rule's key (z; -|z| for target-only), far from hold itself so that f32 cannot tip them."""
    z, y, w, b, ed = _case(rng, T, V, matched=min(3, T))
    leads = LEADS if T > 1 else LEADS[1:2]
    for t, d in enumerate(leads[:T]):
        others = np.arange(V) != y[t]
        if rule == "target-only":
            c = 3.0 * hold                                           # every other |z| >= c
            z[t, others] = np.where(z[t, others] < 0, -1.0, 1.0) * (np.abs(z[t, others]) + c)
            z[t, y[t]] = c - d * hold
        else:
            y[t] = np.argmax(np.where(others, -np.inf, z[t])) if t == 3 else y[t]
            others = np.arange(V) != y[t]
            z[t, y[t]] = z[t, others].max() + d * hold
    return z, y, w, b, ed


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("T,V", SHAPES)
def test_hold_shader_matches_twin(run, rng, rule, T, V):
    """Rows whose target is the argmax by less than hold mismatch (and first-mismatch picks the first
    of them, lowering its runner-up); rows leading by more do not; pred stays the argmax."""
    z, y, w, b, ed = _hold_case(rng, T, V, rule)
    g, st = run(z, y, w, rule, b, ed, hold=HOLD)
    g_ref, st_ref = _ref(z, y, w, rule, b, ed, hold=HOLD)
    _, st0 = _ref(z, y, w, rule, b, ed)
    assert st_ref.first == (0 if T == 1 else 1) and st_ref.n_mismatch == st0.n_mismatch + (1 if T == 1 else 2)
    assert np.array_equal(st_ref.pred, st0.pred) and st_ref.pred[st_ref.first] == y[st_ref.first]
    assert np.any(g_ref != 0)
    assert _grad_err(g, g_ref, z, y, w, rule, b, ed) < TOL
    _same_stats(st, st_ref)


def test_hold_first_mismatch_lowers_the_runner_up(run, rng):
    """t* is the first row led by a hair; its gradient lowers r (the strongest wrong token), raises y."""
    z, y, w, b, ed = _hold_case(rng, 7, 1001, "first-mismatch")
    g, st = run(z, y, w, "first-mismatch", hold=HOLD)
    r = int(np.argmax(np.where(np.arange(1001) == y[1], -np.inf, z[1])))
    assert st.first == 1 and st.pred[1] == y[1] != r
    assert not np.any(np.delete(g, 1, axis=0))
    assert g[1, y[1]] < 0 < g[1, r] and g[1, r] == g[1].max()
    z[1, y[1]] = z[1, r] + 2.5 * HOLD; z[2, y[2]] += 2.5 * HOLD     # both now lead clearly
    g, st = run(z, y, w, "first-mismatch", hold=HOLD)
    assert st.first == 4 and st.pred[4] != y[4]                      # back to a plain mismatch


def test_hold_nothing_to_fix(run, rng):
    """Every counted row leads by more than hold: no mismatch, a zero gradient, for both rules that
    train only mismatches."""
    z, y, w, b, ed = _case(rng, 7, 1001, matched=7)
    for t in range(7):
        z[t, y[t]] = np.delete(z[t], y[t]).max() + (0.2 if t == 3 else 2.0) * HOLD   # row 3: masked
    for rule in ("first-mismatch", "mismatch-only"):
        g, st = run(z, y, w, rule, hold=HOLD)
        assert not np.any(g) and st.loss == 0.0 and (st.first, st.n_mismatch) == (7, 0)


def test_hold_zero_is_the_argmax(rng):
    """hold = 0: a row mismatches exactly when its argmax is wrong (the twin's default path)."""
    z, y, w, b, ed = _hold_case(rng, 9, 301, "mismatch-only", hold=1e-3)
    for rule in RULES:
        g0, st0 = _ref(z, y, w, rule, b, ed)
        g1, st1 = _ref(z, y, w, rule, b, ed, hold=0.0)
        assert g0.tobytes() == g1.tobytes() and st0.loss == st1.loss
        assert st0.n_mismatch == int(np.sum((w > 0) & (R.predictions(z, rule) != y)))


# -- the twin against torch autograd -------------------------------------------------------------
def _torch_loss(torch, z, y, w, rule, b, ed, margin, hold=0.0):
    """The rule table written a second time, in torch; predictions, r and t* are constants."""
    T, V = z.shape
    rows = torch.arange(T)
    yt = torch.as_tensor(y.astype(np.int64))
    wt = torch.as_tensor(w.astype(np.float64))
    counted = wt > 0
    if rule == "target-only":
        pred = z.detach().abs().argmin(-1)
        return (wt * z[rows, yt] ** 2).sum() / counted.sum()
    logp = torch.log_softmax(z, -1)
    ce = -logp[rows, yt]
    pred = z.detach().argmax(-1)
    wrong = z.detach().clone()
    wrong[rows, yt] = -torch.inf
    rival = wrong.argmax(-1)                       # the strongest wrong token
    mism = counted & ((pred != yt) | (z.detach()[rows, yt] - wrong[rows, rival] < hold))
    if rule == "ce":
        return (wt * ce).sum() / wt.sum()
    if rule == "span":
        return (wt * ce).sum() / counted.sum()
    if rule == "mismatch-only":
        return (wt * ce * mism).sum() / wt.sum()
    if rule == "first-mismatch":
        if not mism.any():
            return (z * 0).sum()
        t = int(torch.nonzero(mism)[0])
        pr = torch.softmax(z[t], -1)[rival[t]]
        return wt[t] * (ce[t] - torch.log1p(-pr))
    # position-edit
    pi = torch.softmax(torch.as_tensor(b, dtype=torch.float64), -1)
    q = pi.clone()
    for t in range(T):
        u = int(ed[t])
        if u == R.EDIT_NONE:
            continue
        if u == R.EDIT_ARGMAX:
            u = int(pi[t].argmax())
        yy = int(y[t])
        new = pi[t].clone()
        if u != yy:
            new[yy] = new[yy] + new[u]
            new[u] = 0.0
        others = torch.ones(V, dtype=torch.bool)
        others[[yy, u]] = False
        M = pi[t][others].max() if others.any() else 0.0
        new[yy] = torch.maximum(new[yy], M + margin)
        q[t] = new / new.sum()
    return (wt * -(q * logp).sum(-1)).sum() / wt.sum()


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("T,V", [(7, 31), (12, 257)])
def test_twin_gradient_matches_torch_autograd(rng, rule, T, V):
    torch = pytest.importorskip("torch")
    z, y, w, b, ed = _case(rng, T, V)
    g_ref, st_ref = _ref(z, y, w, rule, b, ed, margin=0.2)
    zt = torch.tensor(z.astype(np.float64), requires_grad=True)
    L = _torch_loss(torch, zt, y, w, rule, b, ed, 0.2)
    L.backward()
    want = zt.grad.numpy()
    assert np.any(want != 0)
    assert max_rel_err(g_ref, want) < 1e-6          # the twin's float64 result, rounded to f32
    Lv = float(L.detach())
    assert abs(st_ref.loss - Lv) <= 1e-9 * max(1.0, abs(Lv))


@pytest.mark.parametrize("rule", ["first-mismatch", "mismatch-only", "ce"])
def test_twin_gradient_with_hold_matches_torch_autograd(rng, rule):
    """hold > 0: first-mismatch's row is the first led by a hair and its lowered token the runner-up."""
    torch = pytest.importorskip("torch")
    z, y, w, b, ed = _hold_case(rng, 12, 257, rule)
    g_ref, st_ref = _ref(z, y, w, rule, b, ed, hold=HOLD)
    assert st_ref.first == 1
    zt = torch.tensor(z.astype(np.float64), requires_grad=True)
    L = _torch_loss(torch, zt, y, w, rule, b, ed, 0.1, hold=HOLD)
    L.backward()
    want = zt.grad.numpy()
    assert np.any(want[1] != 0)
    assert max_rel_err(g_ref, want) < 1e-6
    Lv = float(L.detach())
    assert abs(st_ref.loss - Lv) <= 1e-9 * max(1.0, abs(Lv))


def test_first_rows_of_larger_buffers(device, rng):
    """rows=: the answer's rows at the start of buffers sized for a longer sequence."""
    z, y, w, b, ed = _case(rng, 9, 301)
    d = device
    dz, st = d.buffer((9, 301)), d.buffer(R.STAT_WORDS + 5, np.uint32)
    rec = d.recorder()
    loss(rec, dz, st, d.buffer(z), d.buffer(y), d.buffer(w), rule="position-edit", base=d.buffer(b),
         edits=d.buffer(ed), rows=5)
    rec.finish().run()
    g_ref, st_ref = _ref(z[:5], y[:5], w[:5], "position-edit", b[:5], ed[:5])
    g = dz.read().reshape(9, 301)
    assert _grad_err(g[:5], g_ref, z[:5], y[:5], w[:5], "position-edit", b[:5], ed[:5]) < TOL
    _same_stats(R.unpack_stats(st.read(), 5), st_ref)


def test_bad_inputs(device):
    rec = device.recorder()
    T, V = 3, 10
    dz, st, z = device.buffer((T, V)), device.buffer(R.STAT_WORDS, np.uint32), device.buffer((T, V))
    y, w = device.buffer(T, np.uint32), device.buffer(T)
    with pytest.raises(VkharpError, match="unknown rule 'cross'"):
        loss(rec, dz, st, z, y, w, rule="cross")
    with pytest.raises(VkharpError, match="position-edit needs base="):
        loss(rec, dz, st, z, y, w, rule="position-edit")
    with pytest.raises(VkharpError, match="targets .* must be uint32"):
        loss(rec, dz, st, z, device.buffer(T), w, rule="ce")
    with pytest.raises(VkharpError, match="stats .* must hold 8 words, or 11"):
        loss(rec, dz, device.buffer(9, np.uint32), z, y, w)
    with pytest.raises(VkharpError, match=r"dlogits .* holds 29 elements"):
        loss(rec, device.buffer(29), st, z, y, w)
    with pytest.raises(VkharpError, match=r"rows must be an integer in \[1, 3\]"):
        loss(rec, dz, st, z, y, w, rows=4)
    for bad in (-0.5, float("nan"), float("inf"), "1"):
        with pytest.raises(VkharpError, match="hold must be a finite number >= 0"):
            loss(rec, dz, st, z, y, w, hold=bad)
        with pytest.raises(VkharpError, match="hold must be a finite number >= 0"):
            R.loss(np.zeros((T, V)), [0, 1, 2], [1, 1, 1], hold=bad)
    with pytest.raises(VkharpError, match="one entry per row"):
        R.loss(np.zeros((T, V)), [0, 1], [1, 1, 1], rule="ce")
