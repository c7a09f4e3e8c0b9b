"""shaders/sample.comp against engine/reference/sample.py, and the sampler settings' validation.

Every recorded program is kept for the module (lavapipe compiles each spec-constant set for seconds);
each case writes new logits / params / ring and replays it.
"""
import math

import numpy as np
import pytest

from engine.errors import VkharpError
from engine.ops.sample import sample
from engine.reference.sample import sample as ref_sample
from engine.sampling import (NO_TOKEN, OUT_WORDS, PATH_FULL, PATH_GREEDY, PATH_LIST, PATH_NONE, SP_WORDS,
                             SamplerSettings, pack_sample_params, unpack_result)

RING = 16
# Statistics are f32 sums of up to 262k terms in another order than the twin's float64: ~1e-6
# relative; logs and exps add a few ulps. 1e-4 leaves margin and still catches a wrong term.
TOL = 1e-4
# A draw (or a top-p cut) whose target lies within this fraction of the kept mass from a
# cumulative edge may go either way in f32; token identity is checked only beyond it.
EDGE = 1e-4


class Sampler:
    """One recorded program: params uploaded at each replay, the output downloaded at its end."""

    def __init__(self, device, vocab, wg=None):
        self.vocab = vocab
        self.logits = device.buffer(vocab, np.float32, name="logits")
        self.params = device.buffer(SP_WORDS, np.uint32, name="params")
        self.ring = device.buffer(RING, np.uint32, name="recent")
        self.out = device.buffer(OUT_WORDS, np.uint32, name="out")
        rec = device.recorder()
        rec.upload(self.params)
        self.work = sample(rec, self.out, self.logits, self.params, self.ring, vocab=vocab, wg=wg)
        rec.download(self.out)
        self.prog = rec.finish()
        self.ring_host = np.zeros(RING, np.uint32)
        self.last_logits = None

    def set_logits(self, z):
        self.logits.write(np.asarray(z, np.float32))
        self.last_logits = z

    def set_ring(self, tokens):
        self.ring_host = np.zeros(RING, np.uint32)
        self.ring_host[:len(tokens)] = tokens
        self.ring.write(self.ring_host)

    def __call__(self, logits, settings, *, u=0.5, banned=(), ring_count=0, ring_head=0):
        words = pack_sample_params(settings, u=u, banned=banned, ring_count=ring_count, ring_head=ring_head,
                                   ring_capacity=RING)
        if logits is not self.last_logits:     # (replays of the same array keep the buffer as it is)
            self.set_logits(logits)
        self.params.host_view()[:] = words
        self.prog.run()
        got = unpack_result(self.out.host_view())
        want, margin = ref_sample(logits, words, self.ring_host, return_margin=True)
        return got, want, margin


@pytest.fixture(scope="module")
def samplers(device):
    cache = {}

    def get(vocab, wg=None):
        if (vocab, wg) not in cache:
            cache[(vocab, wg)] = Sampler(device, vocab, wg)
        return cache[(vocab, wg)]
    return get


# An entropy near 0 is a difference of nearly equal f32 terms (ln M − Σ w ln w / M with M ≈ 1):
# its absolute error is a few f32 ulps of 1, so entropies also get an absolute tolerance.
H_ABS = 1e-6                      # bits


def assert_matches(got, want, margin, *, exact_token=True):
    assert got.n_kept == want.n_kept or margin < EDGE, (got, want)
    assert got.argmax == want.argmax, (got, want)        # exact: f32 logits compared in both
    if exact_token and margin >= EDGE:
        assert got.token == want.token, (got, want, margin)
    for name, abs_tol in (("h_model", H_ABS), ("p_max", 1e-7), ("temperature", 1e-7)):
        assert math.isclose(getattr(got, name), getattr(want, name), rel_tol=TOL, abs_tol=abs_tol), (name, got, want)
    if got.token == want.token:
        for name, abs_tol in (("p_final", 1e-7), ("p_model", 1e-7), ("h_final", H_ABS)):
            assert math.isclose(getattr(got, name), getattr(want, name), rel_tol=TOL, abs_tol=abs_tol), (name, got, want)


# ---- hand-built distributions: each stage decides the token ----------------------------------------
V_HAND = 4099                     # odd, several vec4 groups per invocation, a tail of 3
SPOTS = [7, 1030, 2051, 4098]     # designed tokens, spread over invocations and the tail


def designed(probs, rest=-40.0):
    """Logits whose softmax puts `probs` on SPOTS (the rest: e^-40 each, negligible)."""
    z = np.full(V_HAND, rest, np.float32)
    z[SPOTS[:len(probs)]] = np.log(np.asarray(probs, np.float64)).astype(np.float32)
    return z


HALVES = [0.5, 0.25, 0.15, 0.1]   # cumulative 0.5, 0.75, 0.9, 1.0


@pytest.mark.parametrize("settings,u,want", [
    (SamplerSettings(), 0.3, 0), (SamplerSettings(), 0.6, 1), (SamplerSettings(), 0.8, 2),
    (SamplerSettings(), 0.95, 3),
    (SamplerSettings(top_k=2), 0.6, 0), (SamplerSettings(top_k=2), 0.7, 1),        # 0.5/0.75 = 0.667
    (SamplerSettings(top_p=0.7), 0.7, 1), (SamplerSettings(top_p=0.45), 0.99, 0),  # nucleus {0,1} / {0}
    (SamplerSettings(top_p=0.76), 0.85, 2),                                        # 0.75 < 0.76: {0,1,2}
    (SamplerSettings(min_p=0.35), 0.7, 1), (SamplerSettings(top_t=0.35), 0.6, 0),  # keep p >= 0.175
    (SamplerSettings(min_p=0.25), 0.9, 2),                                         # 0.15 >= 0.125 kept
    # top-3 → {0.5,0.25,0.15}/0.9; top-p 0.8 of that: 0.556, 0.833 → {0,1}; then u picks in 0.5/0.75
    (SamplerSettings(top_k=3, top_p=0.8), 0.66, 0), (SamplerSettings(top_k=3, top_p=0.8), 0.67, 1),
    (SamplerSettings(top_k=3, top_p=0.8, min_p=0.6), 0.99, 0),                     # min-p drops token 1
    (SamplerSettings(temperature=0), 0.99, 0), (SamplerSettings(temperature=1e-7), 0.99, 0),
    # T = 0.5 squares the odds: 0.25, 0.0625, 0.0225, 0.01 → 0.725, 0.181, 0.065, 0.029
    (SamplerSettings(temperature=0.5), 0.72, 0), (SamplerSettings(temperature=0.5), 0.73, 1),
])
def test_each_stage_decides_the_token(samplers, settings, u, want):
    s = samplers(V_HAND)
    z = designed(HALVES)
    s.set_ring([])
    got, ref, margin = s(z, settings, u=u)
    assert got.token == SPOTS[want] == ref.token, (got, ref)
    assert_matches(got, ref, margin)
    assert (got.path == PATH_GREEDY) == (settings.temperature < 1e-6)


def test_filter_counts_and_final_distribution(samplers):
    s = samplers(V_HAND)
    z = designed(HALVES)
    s.set_ring([])
    got, ref, _ = s(z, SamplerSettings(top_k=3), u=0.1)
    assert got.n_kept == 3 and got.path == PATH_LIST
    assert math.isclose(got.p_final, 0.5 / 0.9, rel_tol=1e-5)
    assert math.isclose(got.p_model, 0.5, rel_tol=1e-5) and math.isclose(got.p_max, 0.5, rel_tol=1e-5)
    h = -sum(p * math.log2(p) for p in np.array(HALVES[:3]) / 0.9)
    assert math.isclose(got.h_final, h, rel_tol=1e-5)
    got, _, _ = s(z, SamplerSettings(), u=0.1)     # no filter: every token, tiny ones included
    assert got.n_kept == V_HAND and got.path == PATH_FULL


def test_top_k_keeps_ties_at_the_threshold(samplers):
    s = samplers(V_HAND)
    z = designed([0.4, 0.2, 0.2, 0.2])
    s.set_ring([])
    got, ref, margin = s(z, SamplerSettings(top_k=2), u=0.9)
    assert got.n_kept == ref.n_kept == 4 and got.token == SPOTS[3]
    assert_matches(got, ref, margin)


def test_greedy_ties_take_the_lowest_index(samplers):
    s = samplers(V_HAND)
    z = np.full(V_HAND, -3.0, np.float32)
    z[[4098, 3001, 1500, 77]] = 5.0            # equal maxima in different invocations and the tail
    s.set_ring([])
    got, ref, _ = s(z, SamplerSettings(temperature=0), u=0.5)
    assert got.token == ref.token == 77 and got.path == PATH_GREEDY
    got, _, _ = s(z, SamplerSettings(temperature=0), u=0.5, banned=[77])
    assert got.token == 1500


def test_bans(samplers):
    s = samplers(V_HAND)
    z = designed(HALVES)
    s.set_ring([])
    got, ref, margin = s(z, SamplerSettings(), u=0.1, banned=[SPOTS[0], 10**6])   # out-of-range id ignored
    assert got.token == ref.token == SPOTS[1]
    assert math.isclose(got.p_model, 0.5, rel_tol=1e-5)          # 0.25 of the remaining 0.5
    assert_matches(got, ref, margin)
    everything = SPOTS + [0, 1, 2, 3]
    z = np.full(V_HAND, -np.inf, np.float32)
    z[everything] = 1.0
    got, ref, _ = s(z, SamplerSettings(), u=0.1, banned=everything)
    assert got.token == ref.token == NO_TOKEN and got.path == PATH_NONE and got.n_kept == 0


def test_repetition_penalty(samplers):
    s = samplers(V_HAND)
    z = np.full(V_HAND, -20.0, np.float32)
    z[[10, 20, 30]] = [2.0, 1.9, -1.0]
    # token 10 twice in the window: penalised once (2/1.2 = 1.667 < 1.9), -1 × 1.2 for token 30
    s.set_ring([10, 30, 10])
    st = SamplerSettings(temperature=0, repeat_penalty=1.2, repeat_window=8)
    got, ref, _ = s(z, st, ring_count=3, ring_head=3)
    assert got.token == ref.token == 20
    pen = np.array([2.0 / 1.2, 1.9, -1.2] + [-20.0] * (V_HAND - 3))
    p = np.exp(pen - pen.max()) / np.exp(pen - pen.max()).sum()
    assert math.isclose(got.p_max, p.max(), rel_tol=1e-5)
    assert math.isclose(got.h_model, -(p * np.log2(p)).sum(), rel_tol=1e-5)
    # a window of 1 sees only the last token (10 at slot 2): the same choice; of 0 sees nothing
    got, _, _ = s(z, SamplerSettings(temperature=0, repeat_penalty=1.2, repeat_window=1), ring_count=3, ring_head=3)
    assert got.token == 20
    got, _, _ = s(z, SamplerSettings(temperature=0, repeat_penalty=1.2, repeat_window=0), ring_count=3, ring_head=3)
    assert got.token == 10
    # a window of 2 over [10, 30, 31] (head 3) sees 31 and 30: token 10 keeps its logit
    s.set_ring([10, 30, 31])
    got, ref, _ = s(z, SamplerSettings(temperature=0, repeat_penalty=1.2, repeat_window=2), ring_count=3, ring_head=3)
    assert got.token == ref.token == 10
    # the ring wraps: head 1, count 16 → the last tokens are slots 0, 15, 14, ...
    ring = np.full(RING, 5, np.uint32)
    ring[0] = 10
    s.set_ring(ring)
    st = SamplerSettings(temperature=0, repeat_penalty=1.2, repeat_window=3)
    got, ref, _ = s(z, st, ring_count=16, ring_head=1)
    assert got.token == ref.token == 20
    got, ref, _ = s(z, st, ring_count=16, ring_head=8)          # slots 7, 6, 5: no token 10
    assert got.token == ref.token == 10


@pytest.mark.parametrize("settings", [SamplerSettings(repeat_penalty=1.5, top_k=3), SamplerSettings(temperature=0,
                                      repeat_penalty=0.5)])
def test_logits_are_restored(samplers, rng, settings):
    """Bans and penalties are applied in place during the dispatch; the buffer ends as it began."""
    s = samplers(V_HAND)
    z = (rng.standard_normal(V_HAND) * 3).astype(np.float32)
    s.set_ring([5, 6, 7, 7, 4098, 10**6])
    for _ in range(3):                         # replays must not compound the penalty
        got, ref, margin = s(z, settings, u=0.3, banned=[1, 2, 4097], ring_count=6, ring_head=6)
        assert_matches(got, ref, margin)
        np.testing.assert_array_equal(s.logits.read(), z)


@pytest.mark.parametrize("settings", [
    SamplerSettings(temp_rule="dynatemp", temperature=0.8, dynatemp_range=0.5, dynatemp_exponent=1.0),
    SamplerSettings(temp_rule="dynatemp", temperature=0.3, dynatemp_range=0.5, dynatemp_exponent=2.0),
    SamplerSettings(temp_rule="edt", temperature=1.0, edt_theta=0.5),
    SamplerSettings(temp_rule="edt", temperature=0.7, edt_theta=2.0, edt_n=0.6),
])
def test_adaptive_temperature(samplers, settings):
    s = samplers(V_HAND)
    z = designed(HALVES)
    s.set_ring([])
    got, ref, margin = s(z, settings, u=0.4)
    p = np.array(HALVES)
    h = float(-(p * np.log(p)).sum())             # nats (the e^-40 tokens add ~1e-13)
    if settings.temp_rule == "dynatemp":
        t_min = max(0.0, settings.temperature - settings.dynatemp_range)
        t_max = settings.temperature + settings.dynatemp_range
        want_t = t_min + (t_max - t_min) * (h / math.log(V_HAND)) ** settings.dynatemp_exponent
    else:
        want_t = settings.temperature * settings.edt_n ** (settings.edt_theta / h)
    assert math.isclose(got.temperature, want_t, rel_tol=1e-4)
    assert_matches(got, ref, margin)


def test_edt_zero_entropy_is_greedy(samplers):
    s = samplers(V_HAND)
    z = np.full(V_HAND, -200.0, np.float32)
    z[123] = 0.0
    s.set_ring([])
    got, ref, _ = s(z, SamplerSettings(temp_rule="edt", edt_theta=1.0), u=0.9)
    assert got.token == ref.token == 123 and got.temperature == 0.0 and got.path == PATH_GREEDY


@pytest.mark.parametrize("vocab,wg", [(3, 64), (4099, 64), (4099, 1024)])
def test_work_group_sizes_and_tiny_vocab(samplers, rng, vocab, wg):
    s = samplers(vocab, wg)
    s.set_ring([1, 2, 2])
    for st in [SamplerSettings(top_k=2), SamplerSettings(top_p=0.8, repeat_penalty=1.3), SamplerSettings(),
               SamplerSettings(temperature=0)]:
        z = (rng.standard_normal(vocab) * 2).astype(np.float32)
        s.set_logits(z)
        got, ref, margin = s(z, st, u=float(rng.random()), banned=[0], ring_count=3, ring_head=3)
        assert_matches(got, ref, margin)


# ---- random logits against the twin ----------------------------------------------------------------
RANDOM_SETTINGS = [
    SamplerSettings(),
    SamplerSettings(top_k=40, top_p=0.95, min_p=0.05, temperature=0.7),
    SamplerSettings(top_k=1, temperature=1.3),
    SamplerSettings(top_p=0.5),
    SamplerSettings(top_p=0.99, temperature=0.8),             # a nucleus far beyond the list: refining passes
    SamplerSettings(top_k=5000),                              # more than the list holds
    SamplerSettings(top_k=3000, top_p=0.9, temperature=1.5),  # top-p after a top-k found by refining
    SamplerSettings(min_p=0.2, repeat_penalty=1.3, repeat_window=16),
    SamplerSettings(temp_rule="dynatemp", temperature=1.0, dynatemp_range=0.7, top_k=100),
    SamplerSettings(temp_rule="edt", temperature=1.0, edt_theta=4.0, top_p=0.9),
    SamplerSettings(temperature=0),
]


@pytest.mark.parametrize("vocab", [49157, 262147])
def test_random_logits_match_the_twin(samplers, rng, vocab):
    s = samplers(vocab)
    s.set_ring(rng.integers(0, vocab, RING))
    paths, passes = set(), set()
    for i, st in enumerate(RANDOM_SETTINGS):
        z = (rng.standard_normal(vocab) * rng.choice([1.0, 3.0])).astype(np.float32)
        z[rng.integers(0, vocab, 5)] = -np.inf                # masked by the model
        s.set_logits(z)
        banned = rng.integers(0, vocab, i % 4)
        got, ref, margin = s(z, st, u=float(rng.random()), banned=banned, ring_count=RING, ring_head=i % RING)
        assert_matches(got, ref, margin)
        paths.add(got.path)
        passes.add(got.passes)
    assert {PATH_GREEDY, PATH_LIST, PATH_FULL} <= paths
    assert {1, 3} <= passes and max(passes) >= 5          # greedy, the fast path, refining passes


def test_replays_with_new_params_give_new_draws(samplers, rng):
    """One recorded program; only the uploaded params change between replays."""
    s = samplers(49157)
    z = (rng.standard_normal(49157) * 1.5).astype(np.float32)
    s.set_logits(z)
    s.set_ring([])
    st = SamplerSettings(top_k=50, temperature=1.2)
    tokens = []
    for u in rng.random(12):
        got, ref, margin = s(z, st, u=float(u))
        assert_matches(got, ref, margin)
        tokens.append(got.token)
    assert len(set(tokens)) >= 6                               # 12 draws over ~50 tokens
    got, ref, _ = s(z, SamplerSettings(temperature=0))         # the settings change too
    assert got.token == ref.token == int(np.argmax(z))


# ---- invalid settings and arguments --------------------------------------------------------------
@pytest.mark.parametrize("kwargs,name", [
    ({"temperature": -0.1}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"temp_rule": "hot"}, "temp_rule"), ({"dynatemp_range": -1.0}, "dynatemp_range"),
    ({"dynatemp_exponent": -1.0}, "dynatemp_exponent"), ({"edt_theta": -1.0}, "edt_theta"),
    ({"edt_n": 1.0}, "edt_n"), ({"edt_n": 0.0}, "edt_n"), ({"top_k": -1}, "top_k"), ({"top_k": 2.5}, "top_k"),
    ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"min_p": 1.5}, "min_p"), ({"top_t": -0.1}, "min_p"),
    ({"min_p": 0.1, "top_t": 0.2}, "top_t"), ({"repeat_penalty": 0.0}, "repeat_penalty"),
    ({"repeat_window": -3}, "repeat_window"), ({"top_k": True}, "top_k"),
])
def test_invalid_settings_raise(kwargs, name):
    with pytest.raises(VkharpError, match=name):
        SamplerSettings(**kwargs)


def test_alias_and_packing():
    assert SamplerSettings(top_t=0.1).min_p == 0.1 and SamplerSettings(min_p=0.1).top_t == 0.1
    w = pack_sample_params(SamplerSettings(top_k=7), u=0.25, banned=[3, 9], ring_count=2, ring_head=2)
    assert w.dtype == np.uint32 and w.size == SP_WORDS and w[6] == 7 and w[14] == 2 and list(w[16:18]) == [3, 9]
    assert w[11] == np.float32(0.25).view(np.uint32)
    for kwargs, name in [({"u": 1.0}, "u"), ({"u": -0.1}, "u"), ({"u": 0.5, "banned": range(9)}, "banned"),
                         ({"u": 0.5, "ring_count": 17, "ring_capacity": 16}, "ring_count"),
                         ({"u": 0.5, "ring_head": 16, "ring_capacity": 16}, "ring_head")]:
        with pytest.raises(VkharpError, match=name):
            pack_sample_params(SamplerSettings(), **kwargs)


def test_shared_memory_sizes_the_list(device):
    from dataclasses import replace
    from types import SimpleNamespace
    from engine.errors import DeviceLimitError
    from engine.ops.sample import list_capacity
    small = SimpleNamespace(info=replace(device.info, max_shared_memory=16384))   # the Vulkan minimum
    assert list_capacity(small, 64, 16) == 1024
    with pytest.raises(DeviceLimitError, match="shared memory"):
        list_capacity(small, 1024, 16)
    big = SimpleNamespace(info=replace(device.info, max_shared_memory=49152))
    assert list_capacity(big, 1024, 16) == 2048


def test_launcher_checks_its_buffers(device):
    V = 100
    good = dict(out=device.buffer(OUT_WORDS, np.uint32), logits=device.buffer(V), params=device.buffer(SP_WORDS, np.uint32),
                recent=device.buffer(4, np.uint32))
    for name, bad, msg in [("logits", device.buffer(V, np.uint32), "logits"), ("logits", device.buffer(V - 1), "logits"),
                           ("params", device.buffer(SP_WORDS - 1, np.uint32), "params"),
                           ("out", device.buffer(OUT_WORDS), "out"), ("recent", device.buffer(4), "recent")]:
        args = dict(good, **{name: bad})
        with pytest.raises(VkharpError, match=msg):
            sample(device.recorder(), args["out"], args["logits"], args["params"], args["recent"], vocab=V)
    with pytest.raises(VkharpError, match="wg"):
        sample(device.recorder(), good["out"], good["logits"], good["params"], good["recent"], vocab=V, wg=96)
    with pytest.raises(VkharpError, match="vocab"):
        sample(device.recorder(), good["out"], good["logits"], good["params"], good["recent"], vocab=0)


@pytest.mark.parametrize("settings", [SamplerSettings(temperature=0.0), SamplerSettings(), SamplerSettings(top_k=0)])
def test_nonfinite_logits_are_counted(samplers, rng, settings):
    """NaN and +inf logits are counted in O_NONFINITE (as the twin counts them), whatever the path,
    so that generation can stop with an error instead of drawing from a broken model; banned ones
    (they become -inf) and -inf do not count."""
    s = samplers(4099)
    z = rng.standard_normal(4099).astype(np.float32)
    z[[5, 777, 4098]] = np.nan
    z[1234] = np.inf
    z[99] = -np.inf
    z[2000] = np.nan                       # banned below: not counted
    got, ref, _ = s(z, settings, u=0.3, banned=[2000])
    assert got.nonfinite == ref.nonfinite == 4
    clean = rng.standard_normal(4099).astype(np.float32)
    got, ref, _ = s(clean, settings, u=0.3)
    assert got.nonfinite == ref.nonfinite == 0
