"""engine/convert from Hugging Face checkpoints: every tensor decodes to the HF tensor (exactly as
quant.quantize would store it), the directory format validates, and every failure is a clear VkharpError
that leaves nothing behind."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from engine import quant
from engine.convert import cached_path, convert, ensure_converted, open_model_dir
from engine.convert.format import ModelDir
from engine.errors import VkharpError
from models import get_architecture

from checkpoints import CHAT_TEMPLATE, hf_state, make_hf_checkpoint

# Relative error ‖decoded − w‖/‖w‖ each format must stay under for N(0, σ) weights: f16 half an ulp
# (2^-11 ≈ 4.9e-4); q8_0 step amax/127 over 32 values (~3.5σ) → ~0.8% RMS; q4_0 step amax/8 → ~13%;
# q4_1 step range/15 → ~8%. Bounds sit above the measured values with some margin.
# q5_0 step amax/16 → ~6.5%; q5_1 step range/31 → ~4%; our simple k-quant quantizer: q4_k ~8%
# (range/15 per 32, scales on a 6-bit grid), q6_k ~2% (amax/31 per 16, int8 scales).
TOL = {"f32": 0.0, "f16": 5e-4, "q8_0": 0.012, "q4_0": 0.15, "q4_1": 0.1, "q5_0": 0.075, "q5_1": 0.05,
       "q4_k": 0.11, "q6_k": 0.03}
ARCHS = ["llama", "mistral", "qwen2", "gemma3"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """One checkpoint per architecture (f32), made once for the module."""
    root = tmp_path_factory.mktemp("hf")
    return {a: make_hf_checkpoint(root, a) for a in ARCHS}


def expected_tensor(arch: str, name: str, w: np.ndarray) -> np.ndarray:
    a = get_architecture(arch)
    return w + np.float32(a.norm_offset) if a.is_norm(name) else w


def check_converted(dst: Path, src: Path, arch: str, dtype):
    m = open_model_dir(dst, verify=True)
    state = hf_state(src)
    assert m.manifest["architecture"] == arch
    assert set(m.tensor_names) == set(state) - ({"lm_head.weight"} if m.config.tie_word_embeddings else set())
    for name in m.tensor_names:
        want = expected_tensor(arch, name, state[name])
        got = m.load(name)
        if want.ndim == 1:
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want, err_msg=name)
            continue
        fmt = m.format(name)
        assert fmt == (dtype or "f32"), name
        # Bit-identical to what the reference quantizer stores (catches any mapping or layout slip) ...
        ref = quant.quantize(want, fmt)
        np.testing.assert_array_equal(got.qs, ref.qs, err_msg=name)
        if ref.scales is not None:
            np.testing.assert_array_equal(got.scales, ref.scales, err_msg=name)
        # ... and decodes to the HF tensor within the format's error.
        err = np.linalg.norm(quant.dequantize(got) - want) / np.linalg.norm(want)
        assert err <= TOL[fmt], (name, fmt, err)
        if fmt != "f32":
            assert m.info(name)["rel_error"] == pytest.approx(err, rel=1e-2)
    return m


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", [None, "f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"])
def test_convert_every_arch_and_dtype(tmp_path, ckpts, arch, dtype):
    dst = convert(ckpts[arch], tmp_path / "out", dtype=dtype, progress=False)
    m = check_converted(dst, ckpts[arch], arch, dtype)
    assert m.manifest["dtype"] == (dtype or "auto")
    assert m.architecture.name == arch
    assert sorted(os.listdir(tmp_path)) == ["out"]       # no temporary directory left


@pytest.mark.parametrize("dtype,fallback", [("q4_k", "q5_0"), ("q6_k", "q8_0")])
def test_convert_to_k_quants(tmp_path, dtype, fallback):
    """--dtype q4_k / q6_k: rows of whole 256-column super-blocks get the k-quant (our quantizer, the
    same blocks quant.quantize writes, its error against f32 recorded per tensor), narrower rows
    llama.cpp's fallback for that type, with a note."""
    src = make_hf_checkpoint(tmp_path, "llama", hidden_size=256, intermediate_size=320, num_attention_heads=4,
                             num_key_value_heads=2)
    m = open_model_dir(convert(src, tmp_path / "out", dtype=dtype, progress=False), verify=True)
    state = hf_state(src)
    seen = set()
    for name in m.tensor_names:
        if len(m.shape(name)) != 2:
            continue
        want, got, info = state[name], m.load(name), m.info(name)
        fmt = dtype if want.shape[1] % 256 == 0 else fallback
        assert info["format"] == fmt, name
        assert ("note" in info) == (fmt == fallback)
        ref = quant.quantize(want, fmt)
        np.testing.assert_array_equal(got.qs, ref.qs, err_msg=name)
        np.testing.assert_array_equal(got.scales, ref.scales, err_msg=name)
        err = np.linalg.norm(quant.dequantize(got) - want) / np.linalg.norm(want)
        assert 0 < err <= TOL[fmt] and info["rel_error"] == pytest.approx(err, rel=1e-2), (name, err)
        seen.add(fmt)
    assert seen == {dtype, fallback}     # down_proj's 320 columns fall back


def test_gemma_norms_are_one_plus_w(tmp_path, ckpts):
    m = open_model_dir(convert(ckpts["gemma3"], tmp_path / "g", progress=False))
    state = hf_state(ckpts["gemma3"])
    norms = [n for n in m.tensor_names if n.endswith("norm.weight")]
    assert len(norms) == 3 * 6 + 1   # input, post_attention, pre/post_feedforward, q_norm, k_norm; final
    for n in norms:
        np.testing.assert_array_equal(m.load(n), state[n] + np.float32(1.0))


def test_tied_and_untied(tmp_path):
    for tied in (True, False):
        src = make_hf_checkpoint(tmp_path / f"src{tied}", "llama", tie_word_embeddings=tied)
        m = open_model_dir(convert(src, tmp_path / f"out{tied}", progress=False))
        assert ("lm_head.weight" in m.tensor_names) == (not tied)
        assert m.config.tie_word_embeddings == tied
        if not tied:
            np.testing.assert_array_equal(quant.dequantize(m.load("lm_head.weight")), hf_state(src)["lm_head.weight"])


def test_sharded_bf16_odd_heads(tmp_path):
    # bf16 → f16 by default; a sharded checkpoint converts to the same bytes as the unsharded one;
    # 48 columns cannot hold q blocks: f16 with a note instead of q8_0.
    kw = dict(dtype="bf16", hidden_size=48, num_attention_heads=3, num_key_value_heads=1)
    one = make_hf_checkpoint(tmp_path, "llama", **kw)
    sharded = make_hf_checkpoint(tmp_path, "llama", max_shard_size="20KB", **kw)
    assert (sharded / "model.safetensors.index.json").exists()
    a = open_model_dir(convert(one, tmp_path / "a", progress=False))
    b = open_model_dir(convert(sharded, tmp_path / "b", progress=False))
    assert a.manifest["files"]["model.safetensors"] == b.manifest["files"]["model.safetensors"]
    state = hf_state(one)
    for name in a.tensor_names:
        info = a.info(name)
        assert info["source_format"] == "bf16"
        if len(info["shape"]) == 2:
            assert info["format"] == "f16" and info["rel_error"] < 5e-4
            np.testing.assert_array_equal(quant.dequantize(a.load(name)), state[name].astype(np.float16).astype(np.float32))
    q = open_model_dir(convert(sharded, tmp_path / "q", dtype="q8_0", progress=False))
    assert q.format("model.layers.0.self_attn.q_proj.weight") == "f16"
    assert "multiple of 32" in q.info("model.layers.0.self_attn.q_proj.weight")["note"]
    assert q.format("model.layers.0.self_attn.o_proj.weight") == "f16"     # 48 in-features
    assert q.format("model.layers.0.mlp.down_proj.weight") == "q8_0"      # 96 in-features


def test_side_files_and_split_output(tmp_path, ckpts):
    from tokenizers import Tokenizer
    m = open_model_dir(convert(ckpts["qwen2"], tmp_path / "q", dtype="q4_1", progress=False, max_file_bytes=40_000),
                       verify=True)
    files = [f for f in m.manifest["files"] if f.endswith(".safetensors")]
    assert len(files) > 1 and files[0].startswith("model-00001-of-")
    assert len({m.info(n)["file"] for n in m.tensor_names}) == len(files)
    assert m.chat_template() == CHAT_TEMPLATE            # pulled out of tokenizer_config.json
    assert m.generation_config()["eos_token_id"] == 2
    tok = Tokenizer.from_file(str(m.tokenizer_path))
    ids = tok.encode("The capital of France is").ids
    assert tok.decode(ids) == "The capital of France is" and tok.token_to_id("<|im_end|>") == 2
    assert json.loads((m.path / "config.json").read_text()) == json.loads((ckpts["qwen2"] / "config.json").read_text())


def test_skipped_buffers_and_vision_prefixes(tmp_path):
    # A rotary inv_freq buffer and a wrapper's vision tower are skipped by name; the wrapper's
    # "model.language_model." prefix maps to the causal LM's names.
    from safetensors.numpy import load_file, save_file
    src = make_hf_checkpoint(tmp_path, "gemma3")
    tensors = load_file(src / "model.safetensors")
    tensors = {n.replace("model.", "model.language_model.", 1): v for n, v in tensors.items()}
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(16, np.float32)
    tensors["model.vision_tower.patch.weight"] = np.ones((4, 4), np.float32)
    save_file(tensors, src / "model.safetensors")
    m = open_model_dir(convert(src, tmp_path / "out", progress=False))
    assert "model.layers.2.mlp.down_proj.weight" in m.tensor_names
    assert len(m.manifest["skipped"]) == 2


def rewrite(src: Path, edit):
    from safetensors.numpy import load_file, save_file
    t = load_file(src / "model.safetensors")
    edit(t)
    save_file(t, src / "model.safetensors")


@pytest.mark.parametrize("case,match", [
    ("missing", "missing tensor.*model.layers.1.mlp.up_proj.weight"),
    ("extra", "no place in a llama model.*model.layers.0.mlp.extra.weight"),
    ("shape", r"model.layers.0.self_attn.k_proj.weight has shape \[16, 64\], the config implies \[32, 64\]"),
    ("arch", "unsupported model_type 'gpt_neox'; supported: gemma2, gemma3"),
    ("int", "only float tensors"),
])
def test_checkpoint_errors(tmp_path, case, match):
    src = make_hf_checkpoint(tmp_path, "llama")
    if case == "missing":
        rewrite(src, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    elif case == "extra":
        rewrite(src, lambda t: t.update({"model.layers.0.mlp.extra.weight": np.ones((2, 2), np.float32)}))
    elif case == "shape":
        rewrite(src, lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": np.ones((16, 64), np.float32)}))
    elif case == "int":
        rewrite(src, lambda t: t.update({"model.norm.weight": np.ones(64, np.int32)}))
    else:
        cfg = json.loads((src / "config.json").read_text())
        (src / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt_neox"}))
    with pytest.raises(VkharpError, match=match):
        convert(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_pickle_refused(tmp_path):
    import torch
    src = make_hf_checkpoint(tmp_path, "llama")
    torch.save({"w": torch.zeros(2)}, src / "pytorch_model.bin")
    (src / "model.safetensors").unlink()
    with pytest.raises(VkharpError, match="(?s)pickle.*pytorch_model.bin.*save_pretrained.*safe_serialization=True"):
        convert(src, tmp_path / "out", progress=False)
    with pytest.raises(VkharpError, match="pickle"):
        convert(src / "pytorch_model.bin", tmp_path / "out", progress=False)


def test_truncated_safetensors(tmp_path):
    src = make_hf_checkpoint(tmp_path, "llama")
    f = src / "model.safetensors"
    with open(f, "r+b") as h:
        h.truncate(f.stat().st_size - 100)
    with pytest.raises(VkharpError, match="model.safetensors is truncated: tensor .* ends at byte"):
        convert(src, tmp_path / "out", progress=False)
    f.write_bytes(b"\x05")
    with pytest.raises(VkharpError, match="not a safetensors file"):
        convert(src, tmp_path / "out", progress=False)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_conversion_leaves_nothing(tmp_path, ckpts, monkeypatch, exc):
    from engine.convert.hf import HFSource
    calls = []
    real = HFSource.read

    def failing(self, t, fmt):
        calls.append(t.name)
        if len(calls) == 5:
            raise exc("simulated failure mid-conversion")
        return real(self, t, fmt)

    monkeypatch.setattr(HFSource, "read", failing)
    with pytest.raises(exc):
        convert(ckpts["llama"], tmp_path / "out", progress=False)
    assert len(calls) == 5 and list(tmp_path.iterdir()) == []


def test_existing_destination(tmp_path, ckpts):
    dst = convert(ckpts["llama"], tmp_path / "out", progress=False)
    with pytest.raises(VkharpError, match="already exists"):
        convert(ckpts["qwen2"], dst, progress=False)
    assert open_model_dir(dst).manifest["architecture"] == "llama"
    convert(ckpts["qwen2"], dst, progress=False, overwrite=True)
    assert open_model_dir(dst).manifest["architecture"] == "qwen2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_damage_is_detected(tmp_path, ckpts):
    dst = convert(ckpts["llama"], tmp_path / "out", dtype="q8_0", progress=False)
    f = dst / "model.safetensors"
    good = f.read_bytes()
    data = bytearray(good)
    data[-7] ^= 0xFF                      # same size: only the checksum can tell
    f.write_bytes(bytes(data))
    assert isinstance(open_model_dir(dst), ModelDir)
    with pytest.raises(VkharpError, match=r"model.safetensors is corrupt \(sha256 mismatch\): tensor lm_head.weight "
                       r"differs from what was converted; reconvert it from its source: vkharp convert .* --overwrite "
                       r"--dtype q8_0"):
        open_model_dir(dst, verify=True)
    with open(f, "r+b") as h:
        h.truncate(len(data) - 10)
    with pytest.raises(VkharpError, match="model.safetensors has .* bytes, the manifest says"):
        open_model_dir(dst)
    f.write_bytes(good)
    assert open_model_dir(dst, verify=True)
    (dst / "tokenizer.json").unlink()
    with pytest.raises(VkharpError, match="missing file tokenizer.json"):
        open_model_dir(dst)
    (dst / "manifest.json").write_text("{")
    with pytest.raises(VkharpError, match="manifest.json is corrupt"):
        open_model_dir(dst)
    with pytest.raises(VkharpError, match="no manifest.json"):
        open_model_dir(tmp_path)


def test_ensure_converted_caches(tmp_path, ckpts, monkeypatch):
    monkeypatch.setenv("VKHARP_CACHE", str(tmp_path / "cache"))
    first = ensure_converted(ckpts["mistral"], progress=False)
    assert first.parent == tmp_path / "cache" / "models" and first == cached_path(ckpts["mistral"])
    stamp = (first / "manifest.json").stat().st_mtime_ns
    assert ensure_converted(ckpts["mistral"], progress=False) == first
    assert (first / "manifest.json").stat().st_mtime_ns == stamp          # reused, not converted again
    (first / "config.json").unlink()                                      # damaged: converted again
    assert open_model_dir(ensure_converted(ckpts["mistral"], progress=False), verify=True)
    assert cached_path(ckpts["mistral"], "q8_0") != first


def test_cli(tmp_path, ckpts, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("convert_tool", Path(__file__).parent.parent / "tools" / "convert.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([str(ckpts["gemma3"]), str(tmp_path / "o"), "--dtype", "q4_0", "--quiet", "--verify"]) == 0
    assert open_model_dir(tmp_path / "o").format("model.layers.0.mlp.up_proj.weight") == "q4_0"
    assert tool.main([str(ckpts["gemma3"]), str(tmp_path / "o"), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["f16", "q4_1"])
def test_row_blocks_give_the_same_bytes(tmp_path, ckpts, monkeypatch, dtype):
    # Big matrices are packed a block of rows at a time (bounded memory): blocks of 3 rows must write
    # exactly what one block does, and measure the same error.
    import engine.convert.source as source
    whole = open_model_dir(convert(ckpts["gemma3"], tmp_path / "whole", dtype=dtype, progress=False))
    monkeypatch.setattr(source, "CHUNK_ELEMENTS", 200)
    blocks = open_model_dir(convert(ckpts["gemma3"], tmp_path / "blocks", dtype=dtype, progress=False))
    assert whole.manifest["files"]["model.safetensors"] == blocks.manifest["files"]["model.safetensors"]
    errors = [(whole.info(n)["rel_error"], blocks.info(n)["rel_error"]) for n in whole.tensor_names
              if len(whole.shape(n)) == 2]
    assert len(errors) == 3 * 7 + 1
    for a, b in errors:
        assert a == pytest.approx(b, rel=1e-3)
