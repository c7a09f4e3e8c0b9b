"""Sentence vectors (engine/embed/vectors.py) against transformers: the same pooling over HF's final
normed hidden state (`model.model(...).last_hidden_state`, after `self.norm`), on a random-init
checkpoint (every chunk remainder, a lone last token) and on the default model (the real prompts)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import engine  # noqa: E402
from checkpoints import make_hf_checkpoint, make_hf_model  # noqa: E402
from engine.convert import convert  # noqa: E402
from engine.embed import POOLINGS, embed_texts, pooling_text  # noqa: E402
from engine.embed.vectors import _pooled  # noqa: E402
from engine.errors import VkharpError  # noqa: E402
from engine.model import Model  # noqa: E402

# Our logits match HF's to NMSE ≤ 1e-6 (test_model_fidelity), i.e. a relative error near 1e-3 in
# the worst row; the pooled hidden state is the same computation minus lm_head. 1 − cos ≈ err²/2, so
# 1e-4 leaves a 14x margin on a relative error of 1e-3 while a wrong row, norm or pooling gives ≪ 0.99.
MIN_COS = 0.9999


def hf_vector(hf, ids, pooling):
    with torch.no_grad():
        h = hf.model(torch.tensor(np.asarray(ids, np.int64)[None])).last_hidden_state[0].double().numpy()
    v = h.mean(0) if pooling == "mean" else h[-1]
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def tiny(device, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embed")
    over = dict(num_attention_heads=3, num_key_value_heads=1, hidden_size=96)
    convert(make_hf_checkpoint(tmp, "llama", **over), tmp / "converted", dtype="f32", progress=False)
    hf, _ = make_hf_model("llama", **over)
    return Model(tmp / "converted", device, ctx=64, chunk=7), hf


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_pooled_state_matches_transformers_at_every_chunk_remainder(tiny, pooling):
    model, hf = tiny
    rng = np.random.default_rng(3)
    for n in (1, 6, 7, 8, 15, 22):   # chunk 7: a lone token, a short chunk, exact chunks, a lone last token
        ids = rng.integers(3, model.cfg.vocab_size, n).astype(np.uint32)
        v = _pooled(model, ids, pooling)
        cos = float(v @ hf_vector(hf, ids, pooling) / np.linalg.norm(v))
        assert cos >= MIN_COS, (n, cos)


def test_embedding_leaves_the_chat_cache_alone(tiny):
    model, _ = tiny
    model.reset()
    before = model.prefill([5, 6, 7, 8, 9])
    held = list(model.kv.tokens)
    model.embed(["some words to embed", "and more"], pooling="mean")
    assert model.kv.tokens == held
    model.truncate(4)
    again = model.prefill([9])         # the same cache rows: the embedding pass wrote elsewhere
    np.testing.assert_allclose(again, before, rtol=1e-5, atol=1e-5)


def test_bad_input_is_refused_before_anything_runs(tiny):
    model, _ = tiny
    with pytest.raises(VkharpError, match="unknown pooling 'max'"):
        embed_texts(model, ["x"], pooling="max")
    with pytest.raises(VkharpError, match="text 1 is empty"):
        embed_texts(model, ["fine", "  "], pooling="last")
    with pytest.raises(VkharpError, match="text 0 is .* more than the context of 64"):
        embed_texts(model, ["word " * 200], pooling="last")
    with pytest.raises(VkharpError, match="list of strings"):
        embed_texts(model, "a bare string", pooling="last")


@pytest.fixture(scope="module")
def smol(device):
    return engine.load(None, device, ctx=256)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_default_model_vectors_match_transformers(smol, pooling):
    from test_default_model import _hf_on_our_weights
    hf = _hf_on_our_weights(smol.path)
    texts = ["The cat sat on the mat.",
             "Paris is the capital of France, and it is famous for its museums, its bridges over the Seine "
             "and its long history of art, science and revolution."]   # > one chunk of 32 tokens
    got = smol.embed(texts, pooling=pooling)
    assert got.shape == (2, smol.cfg.hidden_size) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)
    for text, v in zip(texts, got):
        want = hf_vector(hf, smol.tokenizer.encode(pooling_text(text, pooling)), "mean" if pooling == "mean" else "last")
        assert float(v @ want) >= MIN_COS, (pooling, float(v @ want))
    assert float(got[0] @ got[1]) < 0.999   # two different sentences are two different vectors
