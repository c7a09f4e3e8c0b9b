"""The generation API on the default model: settings, finish reasons, stop strings, determinism,
HARP's flags and rollback's events, and the cache after a rollback (bit-exact against a fresh run)."""
import numpy as np
import pytest

from engine.errors import VkharpError
from engine.model import ContextFull, load
from engine.settings import GenerationSettings

GREEDY = dict(temperature=0.0)


@pytest.fixture(scope="module")
def model(device):
    return load(None, device, ctx=192)


def run(model, prompt, **kw):
    model.reset()
    return list(model.generate(prompt, **kw))


@pytest.mark.parametrize("bad, word", [
    (dict(temperature=-1), "temperature"), (dict(top_t=1.5), "min_p"), (dict(top_p=0), "top_p"),
    (dict(harp="sometimes"), "harp"), (dict(harp_delta=1.0), "harp_delta"), (dict(harp_beta=-0.1), "harp_beta"),
    (dict(rollback_window=0), "rollback_window"), (dict(max_tokens=-1), "max_tokens"),
    (dict(rollback="yes"), "rollback"), (dict(stop=[""]), "stop"), (dict(bogus=1), "bogus"),
])
def test_invalid_settings_name_the_value(bad, word):
    with pytest.raises(VkharpError, match=word):
        GenerationSettings().replace(**bad)


def test_settings_from_text():
    s = GenerationSettings().set("top-t", "0.2").set("harp", "cached").set("rollback", "on").set("stop", "a|bc")
    assert (s.min_p, s.harp, s.rollback, s.stop) == (0.2, "cached", True, ("a", "bc"))
    with pytest.raises(VkharpError, match="temperature takes a float, got 'hot'"):
        s.set("temperature", "hot")
    with pytest.raises(VkharpError, match="unknown setting"):
        s.set("warmth", "1")


def test_finish_reasons_length_stop_and_context(model, device):
    steps = run(model, "Once upon a time", max_tokens=5, **GREEDY)
    assert len(steps) == 5 and [s.finish for s in steps] == [None] * 4 + ["length"]
    chat = model.tokenizer.apply_chat_template([{"role": "user", "content": "Say hi."}])
    steps = run(model, model.tokenizer.encode(chat, add_bos=False), max_tokens=60, **GREEDY)
    assert steps[-1].finish == "stop" and steps[-1].token in model.tokenizer.eos_ids
    small = load(None, device, ctx=12)
    steps = list(small.generate("Once upon a time there", max_tokens=50, **GREEDY))
    assert steps[-1].finish == "context" and small.kv.pos == 12
    with pytest.raises(ContextFull, match="context"):
        small.reset()
        small.generate("word " * 20)


def test_stop_strings_cut_the_text(model):
    full = "".join(s.text for s in run(model, "The capital of France is", max_tokens=8, **GREEDY))
    assert full.startswith(" Paris")
    steps = run(model, "The capital of France is", max_tokens=8, stop=("ris",), **GREEDY)
    assert "".join(s.text for s in steps) == " Pa" and steps[-1].finish == "stop"


def test_same_seed_same_tokens_with_harp_and_rollback(model):
    kw = dict(temperature=1.0, max_tokens=16, harp="cached", rollback=True, seed=5)
    a = [s.token for s in run(model, "Once upon a time", **kw)]
    b = [s.token for s in run(model, "Once upon a time", **kw)]
    assert a == b


@pytest.mark.parametrize("mode", ["paper", "cached"])
def test_harp_reframes_exactly_the_hesitant_steps(model, mode):
    steps = run(model, "def fibonacci(n):", max_tokens=12, harp=mode, harp_theta=1.0, **GREEDY)
    assert [s.reframed for s in steps] == [s.entropy > 1.0 for s in steps]
    assert any(s.reframed for s in steps) and not all(s.reframed for s in steps)
    off = run(model, "def fibonacci(n):", max_tokens=12, harp=mode, harp_theta=1e9, **GREEDY)
    plain = run(model, "def fibonacci(n):", max_tokens=12, **GREEDY)
    assert [s.token for s in off] == [s.token for s in plain] and not any(s.reframed for s in off)


def test_rollback_events_and_the_cache_after_them(model):
    prompt = model.tokenizer.encode("Once upon a time")
    kw = dict(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, max_tokens=40, rollback=True, rollback_risk=0.5,
              rollback_entropy_rise=0.5, rollback_pmax_ratio=0.7, rollback_max=6)
    for seed in range(4):
        steps = run(model, prompt, seed=seed, **kw)
        events = [e for s in steps for e in s.rollbacks]
        if events:
            break
    assert events, "aggressive thresholds should roll back at least once"
    assert len(events) <= 6
    for e in events:
        assert e.tokens and e.reason and prompt.__len__() <= e.position
    accepted = prompt + [s.token for s in steps][:-1]   # the last token is drawn, not yet fed
    assert model.kv.tokens == accepted
    nxt = steps[-1].token
    after = model.decode_logits(nxt)
    model.reset()
    model.prefill(prompt, readback="none")       # a fresh run the way generation feeds: prompt, then 1 by 1
    for t in accepted[len(prompt):]:
        model.prefill([t], readback="none")
    np.testing.assert_array_equal(model.decode_logits(nxt), after)
