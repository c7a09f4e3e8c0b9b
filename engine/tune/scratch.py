"""Training every weight of a model on the device: from scratch (issue 14, part 5), with the adapter's
gradients and optimizer.

    model = Model(converted_dir, device, fuse=False)   # an f32 conversion of a random-init checkpoint
    weights = FullWeights(model)          # every weight copied into a writable device buffer
    trainer = Trainer(model, weights, TuneSettings(rule="ce", lr=3e-3))
    trainer.step([sequence_example(ids) for ids in batch], stop_when_reproduced=False)
    weights.save(out_dir)                 # a checkpoint `vkharp convert` reads like any other

The loaded weights are read-only device buffers (kind "const"); FullWeights copies each into an
"act" buffer on the device, puts it in the model's place (engine/weights.py trainable_weight) and
re-records the model's programs, so the forward programs, the training programs (program.py: with
`full`, the backward also writes every weight's gradient) and the optimizer all read and write the
same buffers. Nothing goes back to the host until `save`.

What it trains: f32 weights of the Llama family without biases or fused matrices, and vkharp_local1d
(models/local1d.py). Each weight must fit one buffer (stacked by layer, as the model reads it: the
device's storage-buffer limit bounds the model, which is meant to be small). Anything else is refused with the reason: the gradients of biases, fused
matrices, sandwich norms, q/k norms and soft-capping exist for adapters but are not wired to weights.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..device import Buffer
from ..errors import VkharpError
from ..ops.copy_rows import copy_block
from ..weights import DeviceWeight, StackedF32, trainable_weight
from .trainer import Example

EMBED, NORM, HEAD = "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"


def sequence_example(ids) -> Example:
    """A plain language-model example: every token after the first is a target."""
    return Example(np.asarray(ids, np.uint32), 1)


class _Param:
    """What the Trainer reads of a trained weight (as it reads an adapter's matrix): its buffer."""

    def __init__(self, buf: Buffer, layer_shape: tuple | None = None):
        self.parts = [type("Part", (), {"qs": buf})()]
        self.layer_shape = layer_shape     # stacked by role (one matrix or norm vector per layer): its shape


class FullWeights:
    """Every weight of `model` as a writable device buffer, trained in place (module doc). Quacks like
    an Adapter for Trainer and TrainProgram: no LoRA targets, `full` set, `params()` every weight."""

    full = True
    rank = 0
    targets = ()

    def __init__(self, model):
        self.model, self.a, self.b = model, {}, {}
        self._check(model)
        dev, L = model.device, model.cfg.num_hidden_layers
        self._params: list[tuple[str, _Param]] = []
        rec = dev.recorder(name="scratch.copy_weights")
        for name, w in list(model.weights.items()):
            model.weights[name] = self._writable(rec, name, w)
        for role, w in list(model.layer_weights.items()):
            if isinstance(w, StackedF32):   # Local1D weights: plain floats, every layer in one buffer
                n = w.rows * w.cols
                buf = dev.buffer((L, w.rows, w.cols), np.float32, "act", name=f"train.{role}")
                for i in range(L):
                    src, j = w.part_for(i)
                    copy_block(rec, buf, src, n, src=j * n, dst=i * n)
                self._params.append((role, _Param(buf, (w.rows, w.cols))))
                model.layer_weights[role] = StackedF32(w.rows, w.cols, [(buf, 0, L)], role, L)
            else:
                model.layer_weights[role] = self._writable(rec, role, w, layers=L)
        rec.finish().run()
        model.set_adapter(None)             # re-record every program over the writable buffers

    @staticmethod
    def _check(model):
        arch, cfg = model.arch, model.cfg
        if model.adapter is not None:
            raise VkharpError("this model has an adapter attached; train from scratch on the plain model")
        why = []
        if arch.sandwich_norms or arch.qk_norm:
            why.append("sandwich or q/k norms")
        if arch.attn_softcap(cfg) or arch.final_softcap(cfg):
            why.append("soft-capping")
        if arch.embed_scale(cfg) != 1.0:
            why.append("a scaled embedding")
        for name in list(model.weights) + list(model.layer_weights):
            if name.endswith(".bias"):
                why.append(f"biases ({name})")
                break
            if "qkv_proj" in name or "gate_up_proj" in name:
                raise VkharpError(f"training every weight needs q/k/v and gate/up as separate matrices; this model "
                                  f"holds {name}: load it with Model(..., fuse=False)")
        if why:
            raise VkharpError(f"training every weight is wired for Llama-style models and {cfg.model_type!r} here has "
                              f"{', '.join(why)}; train an adapter instead (vkharp tune)")
        for name, w in list(model.weights.items()) + list(model.layer_weights.items()):
            if isinstance(w, DeviceWeight) and (w.format != "f32" or len(w.parts) != 1):
                raise VkharpError(f"training every weight needs f32 weights in one buffer each; {name} is "
                                  f"{w.format} in {len(w.parts)} part(s): convert the checkpoint with --dtype f32 "
                                  f"(and keep each matrix under the device's buffer limit)")

    def _writable(self, rec, name: str, w, layers: int = 1):
        dev = self.model.device
        if isinstance(w, DeviceWeight):
            shape = (w.layers, w.rows, w.cols) if w.layers > 1 else (w.rows, w.cols)
            src = w.parts[0].qs
        else:                                 # a norm's plain f32 buffer ([L, D] or [D])
            shape, src = tuple(w.shape), w
        per_layer = None
        if not name.startswith("model.") and name != HEAD:
            per_layer = (w.rows, w.cols) if isinstance(w, DeviceWeight) else (int(np.prod(shape)) // layers,)
        buf = dev.buffer(shape, np.float32, "act", name=f"train.{name}")
        copy_block(rec, buf, src, int(np.prod(shape)), words=True)   # f32 weights are stored as u32 words
        self._params.append((name, _Param(buf, per_layer)))
        return trainable_weight(buf, name) if isinstance(w, DeviceWeight) else buf

    def params(self) -> list[tuple[str, _Param]]:
        return list(self._params)

    @property
    def n_params(self) -> int:
        return sum(p.parts[0].qs.size for _, p in self._params)

    def state(self) -> dict[str, np.ndarray]:
        """Every weight by its HF name (per-layer tensors unstacked), as the host reads them back."""
        L, out = self.model.cfg.num_hidden_layers, {}
        for name, p in self._params:
            buf = p.parts[0].qs
            a = buf.read().reshape(buf.shape)
            if p.layer_shape is not None:
                a = a.reshape(L, *p.layer_shape)
                for i in range(L):
                    out[f"model.layers.{i}.{name}"] = np.ascontiguousarray(a[i])
            else:
                out[name] = a
        return out

    def save(self, path, *, tokenizer_from=None) -> Path:
        """A HF-style checkpoint directory (config.json, model.safetensors f32, the model's tokenizer
        files): `vkharp convert` / `engine.load` read it like any other."""
        from safetensors.numpy import save_file
        from engine.convert.format import SIDE_FILES
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: np.ascontiguousarray(v, np.float32) for k, v in self.state().items()},
                  str(path / "model.safetensors"), metadata={"format": "pt"})
        (path / "config.json").write_text(json.dumps(self.model.cfg.raw, indent=2) + "\n")
        src = Path(tokenizer_from) if tokenizer_from is not None else Path(self.model.path)
        for name in SIDE_FILES:
            if (src / name).is_file() and name != "config.json":
                (path / name).write_bytes((src / name).read_bytes())
        return path


def init_weights(torch_model, seed: int = 0, std: float = 0.02):
    """transformers' Llama initialisation for training from scratch, applied alike to a dense model and a
    Local1D one (so that a comparison of the two starts from the same rule): every matrix, Local1D
    window and embedding N(0, std) (its initializer_range), every norm weight 1."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in torch_model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return torch_model


def windows(ids: np.ndarray, length: int) -> list[np.ndarray]:
    """Non-overlapping sequences of `length` tokens (the tail that does not fill one is dropped)."""
    ids = np.asarray(ids, np.uint32)
    return [ids[i:i + length] for i in range(0, len(ids) - length + 1, length)]


def evaluate_sequences(trainer, seqs) -> dict:
    """Mean loss per predicted token and next-token accuracy (argmax; argmin |y| for a target-only
    model) over held-out sequences, with the weights as they are."""
    loss = wrong = n = 0.0
    for s in seqs:
        st = trainer.evaluate(sequence_example(s))
        rows = len(s) - 1
        loss, wrong, n = loss + st.loss * rows, wrong + st.n_mismatch, n + rows
    return {"loss": loss / n, "accuracy": 1.0 - wrong / n, "tokens": int(n)}


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to `peak`, then cosine decay to a tenth of it at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + np.cos(np.pi * min(1.0, t))))


def train_sequences(trainer, seqs, *, steps: int, batch: int, lr: float, warmup: int = 10, seed: int = 0,
                    on_step=None) -> list:
    """`steps` optimizer steps, each over `batch` sequences drawn without replacement per epoch
    (shuffled by `seed`), at cosine_lr. Returns the StepReports."""
    rng = np.random.default_rng(seed)
    order, reports = [], []
    for step in range(steps):
        while len(order) < batch:
            order.extend(rng.permutation(len(seqs)).tolist())
        pick, order = order[:batch], order[batch:]
        trainer.settings.lr = cosine_lr(step, steps, lr, warmup)
        rep = trainer.step([sequence_example(seqs[i]) for i in pick], stop_when_reproduced=False)
        reports.append(rep)
        if on_step is not None:
            on_step(step, rep)
    return reports
