"""The training graph's gradients equal torch autograd's, for every architecture.

transformers runs the same random-init f32 checkpoint with y = W·x + B·(A·x) on every adapted linear
(A, B as torch parameters, B holding the alpha/r scale as ours does), the CE loss over the answer
rows, and autograd; ours records the forward over the sequence and the backward on the device
(engine/tune/program.py). Every adapter matrix's gradient must match at NMSE ≤ 1e-6 (f32 sums in
another order: ~1e-12 expected), and so must the loss.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from checkpoints import make_hf_checkpoint, make_hf_model  # noqa: E402
from engine.convert import convert  # noqa: E402
from engine.model import Model  # noqa: E402
from engine.tune.lora import Adapter, peft_name, target_dims  # noqa: E402
from engine.tune.trainer import Example, Trainer, TuneSettings  # noqa: E402
from test_model_fidelity import CASES as FIDELITY  # noqa: E402

CASES = {name: FIDELITY[name] for name in
         ("llama-gqa-tied", "llama-odd-heads-untied", "qwen2-bias", "mistral-window", "gemma3", "qwen3-qk-norm",
          "phi3-longrope-long", "gemma2-softcaps", "smollm3-nope-layers")}
UNFUSED = {"qwen2-bias-unfused": "qwen2-bias"}
# the backward's other path: no activations kept (they would pass KEEP_BYTES), each block recomputed
# from its saved input; sandwich norms and q/k norms recompute more of a block
RECOMPUTE = {"llama-gqa-tied-recomputed": "llama-gqa-tied", "gemma3-recomputed": "gemma3",
             "qwen3-qk-norm-recomputed": "qwen3-qk-norm"}
RANK = 4


def nmse(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(((got - want) ** 2).sum() / (want ** 2).sum())


FUSED_HF = {"self_attn.q_proj": ("self_attn.qkv_proj", 0), "self_attn.k_proj": ("self_attn.qkv_proj", 1),
            "self_attn.v_proj": ("self_attn.qkv_proj", 2), "mlp.gate_proj": ("mlp.gate_up_proj", 0),
            "mlp.up_proj": ("mlp.gate_up_proj", 1)}


def torch_grads(hf, arrays, L, ids, start):
    """CE over the answer rows through y = W·x + B·(A·x) (B as ours holds it, scale included). Where
    transformers keeps q/k/v (gate/up) in one matrix (Phi-3), each delta adds to its rows of the output."""
    params = {}
    for i in range(L):
        layer = hf.model.layers[i]
        deltas = {}       # module path -> [(piece index, a, b)]
        for name in list(arrays):
            pre = f"base_model.model.model.layers.{i}."
            if not name.startswith(pre) or not name.endswith(".lora_A.weight"):
                continue
            target = name[len(pre):-len(".lora_A.weight")]
            a = torch.tensor(arrays[name], requires_grad=True)
            b = torch.tensor(arrays[name.replace("lora_A", "lora_B")], requires_grad=True)
            params[name], params[name.replace("lora_A", "lora_B")] = a, b
            try:
                layer.get_submodule(target)
                deltas.setdefault(target, []).append((None, a, b))
            except AttributeError:
                fused, piece = FUSED_HF[target]
                deltas.setdefault(fused, []).append((piece, a, b))
        for path, items in deltas.items():
            mod = layer.get_submodule(path)

            def fwd(x, base=mod.forward, items=sorted(items, key=lambda t: -1 if t[0] is None else t[0])):
                if items[0][0] is None:
                    return base(x) + (x @ items[0][1].T) @ items[0][2].T
                return base(x) + torch.cat([(x @ a.T) @ b.T for _, a, b in items], dim=-1)
            mod.forward = fwd
    for p in hf.parameters():
        p.requires_grad_(False)
    logits = hf(torch.tensor(ids[None].astype(np.int64))).logits[0]
    rows = torch.arange(start - 1, len(ids) - 1)
    loss = torch.nn.functional.cross_entropy(logits[rows], torch.tensor(ids[start:].astype(np.int64)))
    loss.backward()
    return float(loss.detach()), {k: v.grad.numpy() for k, v in params.items()}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    cache = {}

    def get(case):
        if case not in cache:
            arch, over = CASES[case]
            tmp = tmp_path_factory.mktemp(case)
            dst = tmp / "converted"
            convert(make_hf_checkpoint(tmp, arch, **over), dst, dtype="f32", progress=False)
            cache[case] = dst
        return cache[case]
    return get


@pytest.mark.parametrize("case", list(CASES) + list(UNFUSED) + list(RECOMPUTE))
def test_gradients_match_torch_autograd(device, converted, case, monkeypatch):
    monkeypatch.setenv("VKHARP_FUSE", "0" if case in UNFUSED else "1")
    recompute = case in RECOMPUTE
    if recompute:
        import engine.tune.program
        monkeypatch.setattr(engine.tune.program, "KEEP_BYTES", 0)
    case = UNFUSED.get(case, RECOMPUTE.get(case, case))
    arch, over = CASES[case]
    model = Model(converted(case), device, ctx=128, chunk=8)
    rng = np.random.default_rng(3)
    arrays = {}
    for t, (n_in, n_out) in target_dims(model).items():
        for i in range(model.cfg.num_hidden_layers):
            arrays[peft_name(i, t, "A")] = (rng.standard_normal((RANK, n_in)) * 0.2).astype(np.float32)
            arrays[peft_name(i, t, "B")] = (rng.standard_normal((n_out, RANK)) * 0.2).astype(np.float32)
    ad = Adapter(model, rank=RANK, alpha=float(RANK), arrays=dict(arrays))    # scale 1: B as torch holds it
    model.set_adapter(ad)
    trainer = Trainer(model, ad, TuneSettings(rule="ce"))
    ids = rng.integers(3, model.cfg.vocab_size, 19).astype(np.uint32)   # 13 prompt + 6 answer tokens
    ex = Example(ids, 13)
    prog = trainer.program(ex)
    assert (prog.kept is None) == recompute
    prog.forward.run()
    stats = prog.read_stats()
    prog.backward.run()

    want_loss, want = torch_grads(make_hf_model(arch, **over)[0], arrays, model.cfg.num_hidden_layers, ids, 13)
    assert abs(stats.loss - want_loss) <= 1e-5 * abs(want_loss), (stats.loss, want_loss)
    L = model.cfg.num_hidden_layers
    worst = {}
    for name, m in ad.params():
        g = trainer.grads[name].read().reshape(L, m.rows, m.cols)
        target, ab = name.rsplit(".lora_", 1)
        ref = np.stack([want[peft_name(i, target, ab)] for i in range(L)])
        worst[name] = nmse(g, ref)
    assert max(worst.values()) <= 1e-6, worst
    print(f"{case}: loss {stats.loss:.6f} (torch {want_loss:.6f}), worst gradient NMSE {max(worst.values()):.1e}")
    # the sum of squares the host clips with is the gradients' own
    total = sum(float((trainer.grads[n].read().astype(np.float64) ** 2).sum()) for n, _ in ad.params())
    assert abs(prog.grad_sumsq() - total) <= 1e-5 * total
