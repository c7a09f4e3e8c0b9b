"""Adapters cross between vkharp and Hugging Face PEFT in both directions.

Ours, saved by Adapter.save, loads with `PeftModel.from_pretrained` on the same random-init f32
checkpoint and gives the logits our device gives with it; a LoRA made and saved by PEFT (module names,
'all-linear', a regular expression, some layers only, rsLoRA) loads with Adapter.load and gives PEFT's
logits. f32 on both sides, sums in another order: NMSE ~1e-12 expected, 1e-6 allowed (the fidelity
tests' bound). PEFT options whose weights we would drop are refused with a message. PEFT ≥ 0.13 is a
test extra, never a runtime dependency.
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from checkpoints import make_hf_checkpoint, make_hf_model  # noqa: E402
from engine.convert import convert  # noqa: E402
from engine.errors import VkharpError  # noqa: E402
from engine.model import Model  # noqa: E402
from engine.tune.lora import Adapter, peft_name, target_dims  # noqa: E402

ARCH, OVER = "llama", dict(num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=True)
IDS = np.array([5, 17, 3, 99, 42, 8, 61, 23, 7, 130, 11], np.uint32)


def nmse(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(((got - want) ** 2).sum() / (want ** 2).sum())


@pytest.fixture(scope="module")
def model(device, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("peft")
    dst = tmp / "converted"
    convert(make_hf_checkpoint(tmp, ARCH, **OVER), dst, dtype="f32", progress=False)
    m = Model(dst, device, ctx=64, chunk=8, kv_type="f32")   # exact: peft equality at 1e-6
    yield m
    m.set_adapter(None)


def hf_logits(peft_model) -> np.ndarray:
    with torch.no_grad():
        return peft_model(torch.tensor(IDS[None].astype(np.int64))).logits[0].numpy()


def test_our_adapter_loads_in_peft_and_gives_our_logits(model, tmp_path):
    rng = np.random.default_rng(7)
    arrays = {}
    for t, (n_in, n_out) in target_dims(model).items():
        for i in range(model.cfg.num_hidden_layers):
            arrays[peft_name(i, t, "A")] = (rng.standard_normal((4, n_in)) * 0.2).astype(np.float32)
            arrays[peft_name(i, t, "B")] = (rng.standard_normal((n_out, 4)) * 0.2).astype(np.float32)
    ad = Adapter(model, rank=4, alpha=8.0, arrays=arrays)     # scale 2: PEFT must apply alpha/r itself
    model.set_adapter(ad)
    ours = model.logits(IDS)
    model.set_adapter(None)
    base = model.logits(IDS)
    ad.save(tmp_path / "ours")

    hf = peft.PeftModel.from_pretrained(make_hf_model(ARCH, **OVER)[0], str(tmp_path / "ours")).eval()
    want = hf_logits(hf)
    assert nmse(want, base) > 1e-3          # the adapter changes the logits: the comparison can fail
    assert nmse(ours, want) <= 1e-6, nmse(ours, want)


CONFIGS = {
    "module-names": dict(target_modules=["q_proj", "v_proj"]),
    "all-linear": dict(target_modules="all-linear"),
    "regex-one-layer": dict(target_modules=r"model\.layers\.1\.mlp\.(gate|down)_proj"),
    "layers-to-transform": dict(target_modules=["o_proj", "up_proj"], layers_to_transform=[0]),
    "rslora": dict(target_modules=["k_proj", "down_proj"], use_rslora=True),
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_a_peft_lora_loads_here_and_gives_peft_logits(model, tmp_path, case):
    hf, _ = make_hf_model(ARCH, **OVER)
    cfg = peft.LoraConfig(r=3, lora_alpha=5, lora_dropout=0.0, task_type="CAUSAL_LM", **CONFIGS[case])
    pm = peft.get_peft_model(hf, cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():      # PEFT starts B at zero (a no-op): give it values so the test can fail
        for name, p in pm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    pm.save_pretrained(str(tmp_path / case))
    want = hf_logits(pm)

    model.set_adapter(Adapter(model, rank=5))     # programs recorded for another rank first: the
    model.logits(IDS)                              # next adapter must not inherit its buffers
    model.set_adapter(Adapter.load(model, tmp_path / case))
    try:
        got = model.logits(IDS)
    finally:
        model.set_adapter(None)
    assert nmse(want, model.logits(IDS)) > 1e-4
    assert nmse(got, want) <= 1e-6, nmse(got, want)


@pytest.mark.parametrize("field, value, words", [
    ("use_dora", True, "DoRA"), ("modules_to_save", ["lm_head"], "whole modules"),
    ("bias", "lora_only", "biases"), ("rank_pattern", {"q_proj": 2}, "rank_pattern"),
    ("target_modules", ["c_attn"], "none of this model's linear layers")])
def test_peft_options_we_cannot_apply_are_refused(model, tmp_path, field, value, words):
    ad = Adapter(model, rank=2, targets=("self_attn.q_proj",))
    path = ad.save(tmp_path / "a")
    (path / "vkharp_adapter.json").unlink()            # as PEFT writes it: no vkharp metadata
    cfg = json.loads((path / "adapter_config.json").read_text())
    cfg[field] = value
    (path / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(VkharpError, match=words):
        Adapter.load(model, path)
