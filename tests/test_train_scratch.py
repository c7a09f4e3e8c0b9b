"""Training every weight on the device (engine/tune/scratch.py): the gradients of every weight equal
torch autograd's, training lowers the loss, and the trained model saves, converts and loads as itself.

The cases are the models the Local1D study trains (tools/local1d_study.py): a dense Llama (the
baseline) and vkharp_local1d in both output conventions. Each example is one sequence whose every
token after the first is a target, shorter than its program's bucket (the padding must add nothing).
NMSE ≤ 1e-6 per weight (f32 sums in another order: ~1e-12 expected).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from checkpoints import VOCAB, make_hf_checkpoint, make_hf_model, make_tokenizer  # noqa: E402
from engine.convert import convert  # noqa: E402
from engine.errors import VkharpError  # noqa: E402
from engine.model import Model  # noqa: E402
from engine.tune.local1d_torch import build, local1d_config, load_checkpoint, save_checkpoint  # noqa: E402
from engine.tune.scratch import FullWeights, sequence_example  # noqa: E402
from engine.tune.trainer import Trainer, TuneSettings  # noqa: E402
from test_tune_gradients import nmse  # noqa: E402

SMALL = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=775, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, local1d_kernel=5, bos_token_id=1, eos_token_id=2)
CASES = {
    "llama-dense-tied": ("llama", dict(num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=True)),
    "local1d-tied": ("local1d", {}),
    "local1d-target-only-untied-3-layers": ("local1d", dict(output_convention="target-only", tie_word_embeddings=False,
                                                            num_hidden_layers=3, local1d_kernel=7)),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    cache = {}
    tok = tmp_path_factory.mktemp("tok")
    make_tokenizer().save(str(tok / "tokenizer.json"))

    def get(case):
        if case not in cache:
            kind, over = CASES[case]
            tmp = tmp_path_factory.mktemp(case)
            if kind == "llama":
                src = make_hf_checkpoint(tmp, "llama", **over)
                ref = make_hf_model("llama", **over)[0]
            else:
                ref = build(local1d_config(**{**SMALL, **over}), seed=0)
                g = torch.Generator().manual_seed(1)
                with torch.no_grad():                 # random norms: a forgotten norm gradient shows
                    for name, p in ref.named_parameters():
                        if name.endswith("norm.weight"):
                            p.copy_(1 + 0.5 * torch.randn(p.shape, generator=g))
                src = save_checkpoint(ref, tmp / "src", tokenizer_from=tok)
            convert(src, tmp / "converted", dtype="f32", progress=False)
            cache[case] = (tmp / "converted", src, ref)
        return cache[case]
    return get


def torch_outputs(ref, ids):
    """What the trainer's loss reads: logits (HF) or the head's raw outputs y (vkharp_local1d)."""
    out = ref(torch.tensor(ids[None].astype(np.int64)))
    return (out.logits if hasattr(out, "logits") else out)[0]


def torch_loss_and_grads(ref, ids, rule):
    for p in ref.parameters():
        p.requires_grad_(True)
        p.grad = None
    z = torch_outputs(ref, ids)[:-1]
    y = torch.tensor(ids[1:].astype(np.int64))
    if rule == "target-only":              # the seed's true_loss: mean over rows of the target's output²
        loss = (z[torch.arange(len(y)), y] ** 2).mean()
    else:
        loss = torch.nn.functional.cross_entropy(z, y)
    loss.backward()
    return float(loss.detach()), {n: p.grad.numpy().copy() for n, p in ref.named_parameters()}


def stacked_reference(name, grads, L):
    """Our gradient buffer's layout from the HF-named torch gradients (layer roles stacked)."""
    if name.startswith("model.") or name == "lm_head.weight":
        return grads[name]
    return np.stack([grads[f"model.layers.{i}.{name}"] for i in range(L)])


@pytest.mark.parametrize("case", list(CASES))
def test_every_weight_gradient_matches_torch_autograd(device, checkpoints, case):
    dst, _, ref = checkpoints(case)
    model = Model(dst, device, ctx=128, chunk=8, fuse=False)
    weights = FullWeights(model)
    rule = "target-only" if model.arch.output_convention(model.cfg) == "target-only" else "ce"
    trainer = Trainer(model, weights, TuneSettings(rule=rule))
    ids = np.random.default_rng(5).integers(3, VOCAB, 41).astype(np.uint32)   # 40 targets in a T=64 program
    prog = trainer.program(sequence_example(ids))
    assert (prog.T, prog.A) == (64, 64)
    trainer._zero.run()
    prog.forward.run()
    stats = prog.read_stats()
    prog.backward.run()

    want_loss, want = torch_loss_and_grads(ref, ids, rule)
    assert abs(stats.loss - want_loss) <= 1e-5 * abs(want_loss), (stats.loss, want_loss)
    L, worst = model.cfg.num_hidden_layers, {}
    for name, p in weights.params():
        g = trainer.grads[name].read()
        r = stacked_reference(name, want, L)
        worst[name] = nmse(g.reshape(r.shape), r)
    assert max(worst.values()) <= 1e-6, worst
    # every torch parameter has its gradient here (tied: the embedding's holds the head's part too)
    assert len(weights.params()) == len({n if n.startswith(("model.embed", "model.norm", "lm_head")) else
                                         n.split(".", 3)[3] for n in want})
    assert weights.n_params == sum(p.numel() for p in ref.parameters())
    print(f"{case}: loss {stats.loss:.6f} (torch {want_loss:.6f}), {len(worst)} weights, worst NMSE "
          f"{max(worst.values()):.1e}")


def test_training_lowers_the_loss_and_the_model_saves_as_itself(device, checkpoints, tmp_path):
    """60 steps on four fixed sequences: the loss falls by half. The trained weights, saved as a
    checkpoint, convert and load to the logits the trained model computes (and torch computes)."""
    dst, src, _ = checkpoints("local1d-tied")
    model = Model(dst, device, ctx=128, chunk=8, fuse=False)
    weights = FullWeights(model)
    trainer = Trainer(model, weights, TuneSettings(rule="ce", lr=1e-2))
    rng = np.random.default_rng(7)
    batch = [sequence_example(rng.integers(3, VOCAB, 33)) for _ in range(4)]
    first = trainer.step(batch, stop_when_reproduced=False)
    for _ in range(59):
        last = trainer.step(batch, stop_when_reproduced=False)
    assert last.applied and last.loss < 0.5 * first.loss, (first.loss, last.loss)

    probe = rng.integers(3, VOCAB, 21)
    trained = model.logits(probe)                      # the inference programs read the trained buffers
    out = weights.save(tmp_path / "trained")
    convert(out, tmp_path / "converted", dtype="f32", progress=False)
    again = Model(tmp_path / "converted", device, ctx=128, chunk=8).logits(probe)
    assert nmse(again, trained) <= 1e-10
    with torch.no_grad():
        want = load_checkpoint(out).logits(torch.tensor(probe[None].astype(np.int64)))[0].numpy()
    assert nmse(trained, want) <= 1e-6


def test_refusals(device, checkpoints, tmp_path):
    dst, src, _ = checkpoints("llama-dense-tied")
    with pytest.raises(VkharpError, match=r"separate matrices.*fuse=False"):
        FullWeights(Model(dst, device, ctx=64))
    convert(src, tmp_path / "f16", dtype="f16", progress=False)
    with pytest.raises(VkharpError, match=r"needs f32 weights.*--dtype f32"):
        FullWeights(Model(tmp_path / "f16", device, ctx=64, fuse=False))
    gemma = make_hf_checkpoint(tmp_path, "gemma3")
    convert(gemma, tmp_path / "gemma", dtype="f32", progress=False)
    with pytest.raises(VkharpError, match=r"sandwich or q/k norms.*train an adapter instead"):
        FullWeights(Model(tmp_path / "gemma", device, ctx=64, fuse=False))
