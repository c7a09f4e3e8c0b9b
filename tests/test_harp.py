"""HARP on the device against a transformers re-implementation of the reference algorithm.

The reference (romsto/HARP, harp.py): E = embed(ids); E' = E * mask, the mask an element-wise
Bernoulli drop with probability delta and no rescale; logits = beta·l(E) + (1 − beta)·l(E') at the
last position. Our masks come from the counter-based RNG, so engine.rng.dropout_mask rebuilds the
exact mask and transformers runs the reframed pass through `inputs_embeds`.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from checkpoints import make_hf_checkpoint, make_hf_model  # noqa: E402
from engine.convert import convert  # noqa: E402
from engine.model import Model  # noqa: E402
from engine.rng import dropout_mask  # noqa: E402

CASES = {"llama": dict(num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=True),
         "gemma3": {}}   # Gemma scales its embeddings: the mask applies to the scaled rows, as in HF


def nmse(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(((got - want) ** 2).sum() / (want ** 2).sum())


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    cache = {}

    def get(arch):
        if arch not in cache:
            tmp = tmp_path_factory.mktemp(arch)
            src = make_hf_checkpoint(tmp, arch, **CASES[arch])
            convert(src, tmp / "converted", dtype="f32", progress=False)
            cache[arch] = (tmp / "converted", make_hf_model(arch, **CASES[arch])[0])
        return cache[arch]
    return get


def hf_harp_logits(hf, ids, *, seed, delta, beta):
    """The reference algorithm in transformers, with our mask."""
    with torch.no_grad():
        t = torch.tensor(ids[None].astype(np.int64))
        plain = hf(t).logits[0, -1].numpy()
        emb = hf.get_input_embeddings()(t)
        mask = dropout_mask(seed, 0, len(ids), emb.shape[-1], delta)
        emb = emb * torch.from_numpy(~mask[None]).to(emb.dtype)
        reframed = hf(inputs_embeds=emb).logits[0, -1].numpy()
    return beta * plain + (1 - beta) * reframed, plain


@pytest.mark.parametrize("arch", list(CASES))
def test_paper_mode_matches_transformers(device, converted, arch):
    dst, hf = converted(arch)
    model = Model(dst, device, ctx=64, chunk=8)
    ids = np.random.default_rng(3).integers(3, model.cfg.vocab_size, 19)     # chunks of 8, 8, 3
    plain = model.prefill(ids)
    mixed = model.reframe(seed=1234, delta=0.2, beta=0.3, fresh=True)
    want, want_plain = hf_harp_logits(hf, ids, seed=1234, delta=0.2, beta=0.3)
    assert nmse(plain, want_plain) <= 1e-6
    assert nmse(mixed, want) <= 1e-6, nmse(mixed, want)
    assert nmse(mixed, plain) > 1e-4          # the reframed pass really differs
    # the main cache is untouched: the next decode step equals transformers on the plain context
    assert model.kv.pos == ids.size and model.kv.tokens == [int(i) for i in ids]
    nxt = model.decode_logits(5)
    with torch.no_grad():
        hf_next = hf(torch.tensor(np.append(ids, 5)[None].astype(np.int64))).logits[0, -1].numpy()
    assert nmse(nxt, hf_next) <= 1e-6


def test_cached_mode_catches_up_to_the_same_logits(device, converted):
    dst, hf = converted("llama")
    model = Model(dst, device, ctx=64, chunk=8)
    ids = np.random.default_rng(4).integers(3, model.cfg.vocab_size, 30)
    model.prefill(ids[:11])
    model.reframe(seed=7, delta=0.2, beta=0.5, fresh=False)
    held = model._reframed.pos
    assert held == 11
    model.prefill(ids[11:])
    cached = model.reframe(seed=7, delta=0.2, beta=0.5, fresh=False)    # catches up 19 positions
    assert model._reframed.tokens == [int(i) for i in ids]
    again = model.reframe(seed=7, delta=0.2, beta=0.5, fresh=False)     # nothing new: re-runs the last
    assert nmse(again, cached) <= 1e-9                                  # (through N=1, not a chunk)
    np.testing.assert_array_equal(model.reframe(seed=7, delta=0.2, beta=0.5, fresh=False), again)  # bit for bit
    fresh = model.reframe(seed=7, delta=0.2, beta=0.5, fresh=True)
    assert nmse(cached, fresh) <= 1e-9
    want, _ = hf_harp_logits(hf, ids, seed=7, delta=0.2, beta=0.5)
    assert nmse(cached, want) <= 1e-6
    # a rollback of the main cache: the reframed cache keeps only the common prefix
    model.truncate(20)
    model.prefill([9, 10])
    got = model.reframe(seed=7, delta=0.2, beta=0.5, fresh=False)
    want, _ = hf_harp_logits(hf, np.append(ids[:20], [9, 10]), seed=7, delta=0.2, beta=0.5)
    assert nmse(got, want) <= 1e-6
    # another seed invalidates every reframed position
    other = model.reframe(seed=8, delta=0.2, beta=0.5, fresh=False)
    want, _ = hf_harp_logits(hf, np.append(ids[:20], [9, 10]), seed=8, delta=0.2, beta=0.5)
    assert nmse(other, want) <= 1e-6


def test_two_stream_steps_equal_the_lazy_cached_mode_and_transformers(device, converted):
    """The N = 2 step (plain and reframed streams in one pass) gives the plain logits and the mixed
    ones of the cached mode, and keeps both caches in step, through a prompt and 5 decode steps."""
    from engine.forward import RING
    from engine.sampling import SamplerSettings, pack_sample_params, unpack_result
    dst, hf = converted("llama")
    model = Model(dst, device, ctx=64, chunk=8)
    lazy = Model(dst, device, ctx=64, chunk=8)
    ids = [int(t) for t in np.random.default_rng(5).integers(3, model.cfg.vocab_size, 13)]
    words = pack_sample_params(SamplerSettings(temperature=0.0), u=0.5)
    ring = np.zeros(RING, np.uint32)
    feed = ids
    for step in range(6):
        drawn = unpack_result(model.feed_two_streams(feed, words, ring, seed=11, delta=0.2, beta=0.4)).token
        plain = model._logits_buffer("main").read().reshape(-1)
        mixed = model._logits_buffer("reframed").read().reshape(-1)
        assert drawn == int(np.argmax(plain)) and unpack_result(model.sample_mixed()).token == int(np.argmax(mixed))
        want_plain = lazy.prefill(feed)
        want_mixed = lazy.reframe(seed=11, delta=0.2, beta=0.4, fresh=False)
        assert nmse(plain, want_plain) <= 1e-9 and nmse(mixed, want_mixed) <= 1e-9, step
        assert model.kv.tokens == model._reframed.tokens == lazy.kv.tokens
        feed = [int(np.argmax(mixed))]
    hf_mixed, hf_plain = hf_harp_logits(hf, np.array(lazy.kv.tokens), seed=11, delta=0.2, beta=0.4)
    assert nmse(mixed, hf_mixed) <= 1e-6 and nmse(plain, hf_plain) <= 1e-6
    # a rollback: the reframed cache keeps the common prefix and catches up before the next step
    model.truncate(15)
    lazy.truncate(15)
    model.feed_two_streams([7], words, ring, seed=11, delta=0.2, beta=0.4)
    lazy.prefill([7])
    want = lazy.reframe(seed=11, delta=0.2, beta=0.4, fresh=False)
    assert nmse(model._logits_buffer("reframed").read().reshape(-1), want) <= 1e-9
