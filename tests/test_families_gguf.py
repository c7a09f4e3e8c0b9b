"""GGUF files of the newer families (Qwen3, Phi-3 / Phi-4-mini, Gemma 2, SmolLM3), written here as
llama.cpp writes them (gguf-py's names; fused Phi-3 tensors, longrope factors as tensors, Gemma's 1 + w
norms, SmolLM3's Llama permutation), converted and run: the logits equal transformers' on the HF
model the file came from (NMSE <= 1e-6 in f32, as tests/test_model_fidelity.py), so the names, the
metadata rebuilt into config.json and the splits are right. Fused tensors kept as Q8_0 split into
their parts losslessly."""
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

torch = pytest.importorskip("torch")

from checkpoints import make_hf_checkpoint, make_hf_model, write_gguf  # noqa: E402
from engine import quant  # noqa: E402
from engine.convert import convert, open_model_dir  # noqa: E402
from engine.errors import VkharpError  # noqa: E402
from engine.model import Model  # noqa: E402

SHORT = [1.0, 1.1, 1.3, 1.7, 2.0, 2.9, 3.5, 4.0]
LONG = [1.0, 1.5, 2.5, 4.0, 6.0, 9.0, 12.0, 16.0]
CASES = {
    "qwen3": ("qwen3", {}),
    "phi3-longrope": ("phi3", dict(rope_parameters=dict(rope_type="longrope", rope_theta=10000.0,
                                                        short_factor=SHORT, long_factor=LONG),
                                   original_max_position_embeddings=16, max_position_embeddings=64,
                                   sliding_window=12)),
    "phi4mini-partial": ("phi3", dict(rope_parameters=dict(rope_type="longrope", rope_theta=10000.0,
                                                           partial_rotary_factor=0.75, short_factor=SHORT[:6],
                                                           long_factor=LONG[:6]),
                                      original_max_position_embeddings=128, max_position_embeddings=4096,
                                      tie_word_embeddings=True)),
    "gemma2": ("gemma2", dict(attn_logit_softcapping=0.5, final_logit_softcapping=1.0)),
    "smollm3": ("smollm3", dict(no_rope_layer_interval=4, num_hidden_layers=4)),   # llama.cpp's fixed 4
}


def nmse(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(((got - want) ** 2).sum(-1).max() / (want ** 2).sum(-1).min())


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return make_hf_checkpoint(tmp_path_factory.mktemp("tok"), "llama")


@pytest.mark.parametrize("case", list(CASES))
def test_family_gguf_matches_transformers(device, tmp_path, tokenizer_dir, case):
    arch, over = CASES[case]
    model, cfg = make_hf_model(arch, seed=5, **over)
    path = tmp_path / f"{case}.gguf"
    write_gguf(path, arch, model, cfg, tokenizer_dir=tokenizer_dir)
    dst = convert(path, tmp_path / case, dtype="f32", progress=False)
    reader = open_model_dir(dst)
    assert reader.architecture.name == arch
    m = Model(dst, device, ctx=128, chunk=8)
    prompt = np.random.default_rng(2).integers(3, cfg.vocab_size, 21)     # chunks of 8, 8, 5
    with torch.no_grad():
        want = model(torch.tensor(prompt[None])).logits[0].numpy()
    got = m.logits(prompt)
    assert nmse(got, want) <= 1e-6, nmse(got, want)
    print(f"{case} from GGUF: prefill NMSE {nmse(got, want):.1e}")


def test_phi3_fused_q8_0_split_losslessly(tmp_path, tokenizer_dir):
    arch, over = CASES["phi3-longrope"]
    model, cfg = make_hf_model(arch, seed=5, **over)
    path = tmp_path / "phi3.gguf"
    fused = ["model.layers.1.self_attn.qkv_proj.weight", "model.layers.1.mlp.gate_up_proj.weight"]
    raw = write_gguf(path, arch, model, cfg, {n: T.Q8_0 for n in fused}, tokenizer_dir=tokenizer_dir)
    m = open_model_dir(convert(path, tmp_path / "out", progress=False), verify=True)
    q, kv, f = 64, 32, 96
    parts = {fused[0]: [("self_attn.q_proj", 0, q), ("self_attn.k_proj", q, q + kv), ("self_attn.v_proj", q + kv, q + 2 * kv)],
             fused[1]: [("mlp.gate_proj", 0, f), ("mlp.up_proj", f, 2 * f)]}
    for name, rows in parts.items():
        for part, r0, r1 in rows:
            got = m.load(f"model.layers.1.{part}.weight")
            assert m.info(f"model.layers.1.{part}.weight")["format"] == "q8_0"
            np.testing.assert_array_equal(quant.to_gguf_blocks(got), raw[name][r0:r1], err_msg=part)
    # the F32 layer's parts are HF's rows exactly
    sd = model.state_dict()
    np.testing.assert_array_equal(quant.dequantize(m.load("model.layers.0.self_attn.v_proj.weight")),
                                  sd["model.layers.0.self_attn.qkv_proj.weight"][q + kv:].numpy())
    assert m.config.rope_scaling["rope_type"] == "longrope" and m.config.sliding_window == 12


def test_fused_tensor_of_the_wrong_size_is_refused(tmp_path):
    import json
    src = make_hf_checkpoint(tmp_path, "phi3")
    cfg = json.loads((src / "config.json").read_text())
    cfg["intermediate_size"] = 80            # gate_up_proj has 192 rows: 2 x 96
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(VkharpError, match=r"gate_up_proj.weight has shape \[192, 64\]; the config implies 160 rows"):
        convert(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
