"""An attached LoRA adapter changes the forward pass exactly as merging it into the weights would.

transformers runs the same random-init checkpoint with W + (alpha/r)·B·A merged into every adapted
matrix; ours runs the unmerged base weights plus the adapter's products (engine/forward.py), through a
multi-chunk prefill and greedy decode steps, fused (stacked q/k/v and gate/up split for the adapter)
and unfused. NMSE bound as tests/test_model_fidelity.py: f32 everywhere, ≤ 1e-6.
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from checkpoints import make_hf_checkpoint, make_hf_model  # noqa: E402
from engine.convert import convert  # noqa: E402
from engine.errors import VkharpError  # noqa: E402
from engine.model import Model  # noqa: E402
from engine.tune.lora import Adapter, peft_name, target_dims  # noqa: E402

CASES = {"llama": ("llama", dict(num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=True), "1"),
         "qwen2-bias-unfused": ("qwen2", {}, "0"),
         "gemma3-sandwich": ("gemma3", {}, "1")}


def nmse(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(((got - want) ** 2).sum(-1).max() / (want ** 2).sum(-1).min())


def random_arrays(model, rank, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for t, (n_in, n_out) in target_dims(model).items():
        for i in range(model.cfg.num_hidden_layers):
            out[peft_name(i, t, "A")] = (rng.standard_normal((rank, n_in)) * 0.2).astype(np.float32)
            out[peft_name(i, t, "B")] = (rng.standard_normal((n_out, rank)) * 0.2).astype(np.float32)
    return out


def merged(hf, arrays, scale):
    """transformers' model with every adapter product merged into its weight."""
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if not name.endswith("_proj.weight") or ".layers." not in name:
                continue
            key = "base_model.model." + name[:-len(".weight")]
            if key + ".lora_A.weight" in arrays:
                a = torch.from_numpy(arrays[key + ".lora_A.weight"]).double()
                b = torch.from_numpy(arrays[key + ".lora_B.weight"]).double()
                p.copy_((p.double() + scale * b @ a).float())
    return hf


@pytest.mark.parametrize("case", list(CASES))
def test_adapter_equals_merged_weights(device, tmp_path, case, monkeypatch):
    arch, over, fuse = CASES[case]
    monkeypatch.setenv("VKHARP_FUSE", fuse)
    src = make_hf_checkpoint(tmp_path, arch, **over)
    dst = tmp_path / "converted"
    convert(src, dst, dtype="f32", progress=False)
    model = Model(dst, device, ctx=128, chunk=8, kv_type="f32")   # exact: merged-weight equality at 1e-6
    assert ("mlp.gate_up_proj.weight" in model.layer_weights) == (fuse == "1")
    rank, alpha = 4, 6.0
    arrays = random_arrays(model, rank, 5)
    model.set_adapter(Adapter(model, rank=rank, alpha=alpha, arrays=dict(arrays)))
    hf = merged(make_hf_model(arch, **over)[0], arrays, alpha / rank)

    prompt = np.random.default_rng(1).integers(3, model.cfg.vocab_size, 21)   # chunks of 8, 8, 5
    with torch.no_grad():
        out = hf(torch.tensor(prompt[None]), use_cache=True)
    want = out.logits[0].numpy()
    got = model.logits(prompt)
    assert nmse(got, want) <= 1e-6, nmse(got, want)
    model.reset()
    last, past, hf_last = model.prefill(prompt), out.past_key_values, want[-1]
    worst = 0.0
    for _ in range(12):
        tok = int(np.argmax(hf_last))
        assert int(np.argmax(last)) == tok
        last = model.decode_logits(tok)
        with torch.no_grad():
            o = hf(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past, hf_last = o.past_key_values, o.logits[0, -1].numpy()
        worst = max(worst, nmse(last[None], hf_last[None]))
    assert worst <= 1e-6, worst

    # the adapter really matters here, and detaching it gives the base model back
    model.set_adapter(None)
    base = model.logits(prompt)
    assert nmse(base, want) > 1e-3
    with torch.no_grad():
        assert nmse(base, make_hf_model(arch, **over)[0](torch.tensor(prompt[None])).logits[0].numpy()) <= 1e-6


def test_save_load_round_trip_and_refusals(device, tmp_path):
    src = make_hf_checkpoint(tmp_path, "llama")
    convert(src, tmp_path / "a", dtype="f32", progress=False)
    model = Model(tmp_path / "a", device, ctx=64, chunk=8)
    arrays = random_arrays(model, 2, 9)
    ad = Adapter(model, rank=2, alpha=4.0, arrays=dict(arrays), corrections=[{"prompt": "p", "answer": "a"}])
    path = ad.save(tmp_path / "adapter")
    cfg = json.loads((path / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 2 and "q_proj" in cfg["target_modules"]
    back = Adapter.load(model, path)
    assert back.corrections == [{"prompt": "p", "answer": "a"}]
    for k, v in back.to_arrays().items():
        np.testing.assert_allclose(v, arrays[k], rtol=1e-6, atol=1e-7)   # B crosses ×(alpha/r) and back
    # another model (same shapes, other weights): refused by fingerprint, before anything changes
    other_src = make_hf_checkpoint(tmp_path / "o", "llama", seed=1)
    convert(other_src, tmp_path / "b", dtype="f32", progress=False)
    other = Model(tmp_path / "b", device, ctx=64, chunk=8)
    with pytest.raises(VkharpError, match="trained for another model"):
        Adapter.load(other, path)
    # shapes that do not fit (fingerprint removed: a foreign PEFT adapter)
    (path / "vkharp_adapter.json").unlink()
    wide = Model(tmp_path / "b", device, ctx=64, chunk=8)
    from safetensors.numpy import save_file
    bad = dict(arrays)
    bad[peft_name(0, "self_attn.q_proj", "A")] = np.zeros((2, 7), np.float32)
    save_file(bad, str(path / "adapter_model.safetensors"))
    with pytest.raises(VkharpError, match="does not fit this model"):
        Adapter.load(wide, path)
    (path / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(VkharpError, match="damaged"):
        Adapter.load(wide, path)
    assert wide.adapter is None
