"""`vkharp bench --tune`: how fast adapter training runs on the device, as the chat's /fix uses it.

One example of a fixed length (prompt + answer tokens, random ids, so any model's vocabulary serves)
is trained with plain cross-entropy for a few optimizer steps. Each step is timed whole (forward +
loss, backward, AdamW: what Trainer.step replays) and the forward + loss alone, so the backward and
update are the difference. The first step, which compiles the training pipelines, is reported apart
and left out of the medians. Speed is printed, never asserted.
"""
from __future__ import annotations

import json
import statistics
import time

import numpy as np

from ..errors import VkharpError


def run_tune_bench(path, device: int | None = None, *, prompt_tokens: int = 26, answer_tokens: int = 16,
                   steps: int = 5, rank: int = 8, out=None, json_path: str | None = None) -> dict:
    import sys
    out = out or sys.stdout
    if prompt_tokens < 1 or answer_tokens < 1 or steps < 1:
        raise VkharpError("--tune needs at least 1 prompt token, 1 answer token and 1 step")
    from ..model import load
    from .lora import Adapter
    from .trainer import Example, Trainer, TuneSettings
    n = prompt_tokens + answer_tokens
    model = load(path, device, ctx=max(64, n))
    rng = np.random.default_rng(0)
    ids = rng.integers(3, model.cfg.vocab_size, n).astype(np.uint32)
    ex = Example(ids, prompt_tokens)
    adapter = Adapter(model, rank=rank, alpha=2.0 * rank)
    model.set_adapter(adapter)
    trainer = Trainer(model, adapter, TuneSettings(rule="ce"))
    t0 = time.perf_counter()
    first = trainer.step(ex, stop_when_reproduced=False)
    first_s = time.perf_counter() - t0
    step_s, fwd_s, losses = [], [], [first.loss]
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.evaluate(ex)
        fwd_s.append(time.perf_counter() - t0)
        rep = trainer.step(ex, stop_when_reproduced=False)
        step_s.append(rep.seconds)
        losses.append(rep.loss)
    model.set_adapter(None)
    step, fwd = statistics.median(step_s), statistics.median(fwd_s)
    r = {"model": str(model.path), "tokens": n, "answer_tokens": answer_tokens, "rank": rank,
         "adapter_params": adapter.n_params, "first_step_s": first_s, "step_ms": step * 1e3,
         "forward_loss_ms": fwd * 1e3, "backward_update_ms": (step - fwd) * 1e3,
         "train_tok_s": n / step, "steps": steps, "losses": losses}
    print(f"adapter training ({adapter.n_params:,} LoRA parameters, rank {rank}; one example of {n} tokens, "
          f"{answer_tokens} of them answer; cross-entropy):", file=out)
    print(f"  first step (compiles the training pipelines): {first_s:.2f} s", file=out)
    print(f"  per optimizer step, median of {steps}: {step * 1e3:.0f} ms = forward + loss {fwd * 1e3:.0f} ms "
          f"+ backward and AdamW {(step - fwd) * 1e3:.0f} ms; {n / step:.1f} training tokens/s", file=out)
    print(f"  loss {losses[0]:.3f} → {losses[-1]:.3f} over {steps + 1} steps", file=out)
    if json_path:
        text = json.dumps(r, indent=1)
        if json_path == "-":
            sys.stdout.write(text + "\n")
        else:
            with open(json_path, "w") as f:
                f.write(text + "\n")
    return r
