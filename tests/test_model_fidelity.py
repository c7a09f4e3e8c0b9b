"""Model-level fidelity: our logits equal transformers' on the same random-init checkpoint.

For each architecture a tiny checkpoint is built by transformers (small but non-trivial shapes: GQA,
odd head counts, tied and untied embeddings, biases, sliding windows, soft-caps that bite, RoPE scaled
so that every regime of its formula is used), converted by our tool, loaded
and run: a prefill through several chunks, then 64 greedy decode steps through the N=1 program.
NMSE = ‖ours − hf‖² / ‖hf‖² over each row of logits; f32 must be ≤ 1e-6, greedy tokens identical.
The runtime stacks q/k/v and gate/up at load and computes each group in one dispatch; "-unfused"
cases run the separate products (VKHARP_FUSE=0, what a mixed-format checkpoint gets).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from checkpoints import make_hf_checkpoint, make_hf_model  # noqa: E402
from engine.convert import convert  # noqa: E402
from engine.model import Model  # noqa: E402

# longrope factors (head_dim 16: 8 per set; Phi-4-mini-like partial rotary 0.75: 6)
SHORT = [1.0, 1.1, 1.3, 1.7, 2.0, 2.9, 3.5, 4.0]
LONG = [1.0, 1.5, 2.5, 4.0, 6.0, 9.0, 12.0, 16.0]
# llama3 scaling with a short original context, so that low, medium and high frequencies all occur
LLAMA3 = dict(rope_type="llama3", rope_theta=500000.0, factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=64)

CASES = {
    "llama-gqa-tied": ("llama", dict(num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=True)),
    "llama-odd-heads-untied": ("llama", dict(hidden_size=96, num_attention_heads=3, num_key_value_heads=1,
                                             tie_word_embeddings=False)),
    "qwen2-bias": ("qwen2", {}),
    "mistral-window": ("mistral", dict(sliding_window=12)),
    "gemma3": ("gemma3", {}),
    "llama3.2-tied-llama3-rope": ("llama", dict(tie_word_embeddings=True, rope_parameters=LLAMA3)),
    "qwen3-qk-norm": ("qwen3", {}),
    # ctx 128 > original 16: the long factors (HF too: the prompt alone passes 16 positions); window 12
    "phi3-longrope-long": ("phi3", dict(rope_parameters=dict(rope_type="longrope", rope_theta=10000.0,
                                                             short_factor=SHORT, long_factor=LONG),
                                        original_max_position_embeddings=16, max_position_embeddings=64,
                                        sliding_window=12)),
    # Phi-4-mini-like: partial rotary 0.75, tied; ctx 128 = original 128: the short factors
    "phi4mini-longrope-short-partial": ("phi3", dict(rope_parameters=dict(
        rope_type="longrope", rope_theta=10000.0, partial_rotary_factor=0.75, short_factor=SHORT[:6],
        long_factor=LONG[:6]), original_max_position_embeddings=128, max_position_embeddings=4096,
        tie_word_embeddings=True)),
    # caps small enough to bite (scores and logits of this tiny model are O(1))
    "gemma2-softcaps": ("gemma2", dict(attn_logit_softcapping=0.5, final_logit_softcapping=1.0)),
    "smollm3-nope-layers": ("smollm3", {}),
}
UNFUSED = {"qwen2-bias-unfused": "qwen2-bias", "gemma3-unfused": "gemma3"}


def nmse(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(((got - want) ** 2).sum(-1).max() / (want ** 2).sum(-1).min())


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    cache = {}

    def get(case):
        if case not in cache:
            arch, over = CASES[case]
            tmp = tmp_path_factory.mktemp(case)
            src = make_hf_checkpoint(tmp, arch, **over)
            dst = tmp / "converted"
            convert(src, dst, dtype="f32", progress=False)
            hf, _ = make_hf_model(arch, **over)
            cache[case] = (dst, hf)
        return cache[case]
    return get


@pytest.mark.parametrize("kv_type", ["f32", "f16"])
@pytest.mark.parametrize("case", list(CASES) + list(UNFUSED))
def test_prefill_and_decode_match_transformers(device, converted, case, kv_type, monkeypatch):
    """f32 caches: the same function as transformers (NMSE 1e-6, every greedy step's argmax). f16 caches
    (the default): keys and values rounded to 11 significant bits (relative error <= 2^-11 ~ 5e-4 each,
    so a logit NMSE of order (5e-4)^2 times the layers' gain: 0.3-6.4e-7 measured over these cases);
    a near-tie's argmax may then flip, so only f32 asserts it."""
    fuse = case not in UNFUSED
    monkeypatch.setenv("VKHARP_FUSE", "1" if fuse else "0")
    dst, hf = converted(UNFUSED.get(case, case))
    model = Model(dst, device, ctx=128, chunk=8, kv_type=kv_type)
    tol = 1e-6 if kv_type == "f32" else 4e-6
    fused = {"self_attn.qkv_proj.weight", "mlp.gate_up_proj.weight"} & set(model.layer_weights)
    assert len(fused) == (2 if fuse else 0), sorted(model.layer_weights)
    rng = np.random.default_rng(1)
    prompt = rng.integers(3, model.cfg.vocab_size, 21)            # 21 tokens: chunks of 8, 8, 5
    with torch.no_grad():
        out = hf(torch.tensor(prompt[None]), use_cache=True)
    want = out.logits[0].numpy()
    got = model.logits(prompt)
    assert nmse(got, want) <= tol, nmse(got, want)

    # greedy decoding, 64 steps, our decode program vs transformers with its own KV cache
    model.kv.reset()
    last = model.prefill(prompt)
    past, hf_last = out.past_key_values, want[-1]
    assert nmse(last[None], hf_last[None]) <= tol
    worst = 0.0
    for _ in range(64):
        tok = int(np.argmax(last))
        if kv_type == "f32":
            assert tok == int(np.argmax(hf_last))
        last = model.decode_logits(tok)
        with torch.no_grad():
            o = hf(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past, hf_last = o.past_key_values, o.logits[0, -1].numpy()
        worst = max(worst, nmse(last[None], hf_last[None]))
    assert worst <= tol, worst
    print(f"{case} {kv_type}: prefill NMSE {nmse(got, want):.1e}, 64 greedy steps worst NMSE {worst:.1e}")


@pytest.mark.parametrize("case", ["llama-gqa-tied", "mistral-window"])
def test_long_chunks_then_short_ones_match_transformers(device, converted, case):
    """A prompt's body in long chunks (long_chunk, what load() gives), its tail in short ones: the
    last logits and a decode step after them are transformers', and the chunk-only model's."""
    dst, hf = converted(case)
    model = Model(dst, device, ctx=128, chunk=8, long_chunk=32, kv_type="f32")
    plain = Model(dst, device, ctx=128, chunk=8, kv_type="f32")
    prompt = np.random.default_rng(2).integers(3, model.cfg.vocab_size, 77)
    assert [(s, n) for s, n, _ in model._pieces(prompt.size)] == [(0, 32), (32, 32), (64, 8), (72, 5)]
    with torch.no_grad():
        out = hf(torch.tensor(prompt[None]), use_cache=True)
    last = model.prefill(prompt)
    assert nmse(last[None], out.logits[0, -1:].numpy()) <= 1e-6
    assert nmse(last[None], plain.prefill(prompt)[None]) <= 1e-10
    tok = int(np.argmax(last))
    with torch.no_grad():
        nxt = hf(torch.tensor([[tok]]), past_key_values=out.past_key_values, use_cache=True).logits[0, -1:].numpy()
    assert nmse(model.decode_logits(tok)[None], nxt) <= 1e-6


def test_prefill_pieces(device, converted):
    """Long chunks while more than half of one remains, then short chunks, a lone token alone."""
    dst, _ = converted("llama-gqa-tied")
    model = Model(dst, device, ctx=128, chunk=32, long_chunk=128)
    assert list(model._pieces(1)) == [(0, 1, 1)]
    assert list(model._pieces(64)) == [(0, 32, 32), (32, 32, 32)]
    assert list(model._pieces(65)) == [(0, 65, 128)]
    assert list(model._pieces(300)) == [(0, 128, 128), (128, 128, 128), (256, 32, 32), (288, 12, 32)]
    assert list(model._pieces(257)) == [(0, 128, 128), (128, 128, 128), (256, 1, 1)]
    assert Model(dst, device, ctx=128, chunk=32).long_chunk is None
    with pytest.raises(Exception, match="long_chunk"):
        Model(dst, device, ctx=128, long_chunk=0)
