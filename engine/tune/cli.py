"""`vkharp tune MODEL CORRECTIONS.jsonl -o ADAPTER`: learn a file of corrections into one adapter.

Each line is {"prompt": ..., "answer": ...} (optionally "system"): the answer the model should give
to the prompt as a chat turn. The corrections are trained in batches (their gradients summed per
optimizer step) until each is reproduced by greedy decoding or the step limit; a progress bar shows
the loss. The adapter (a PEFT LoRA directory) is written at the end, and on Ctrl-C with what was
learnt so far; the base model's files are never written.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import VkharpError
from ..reference.loss import RULES


def add_tune_flags(p):
    p.add_argument("--rule", choices=list(RULES), default="first-mismatch",
                   help="the loss (default first-mismatch: only the first wrong token; README explains each)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 2e-3)")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="leave every adapter weight whose |gradient| is below this unchanged (default 0: none)")
    p.add_argument("--hold", type=float, default=None,
                   help="logits the right token must lead the runner-up by before a correction counts as learnt "
                        "(default 1.0: greedy decoding then says it reliably)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank of a new adapter (default 8)")


def add_parsers(sub, add_device) -> None:
    s = sub.add_parser("tune", help="learn corrections (JSON lines of prompt and answer) into a LoRA adapter",
                       description=__doc__.split("\n\n")[0])
    add_device(s)
    s.add_argument("model", nargs="?", default=None,
                   help="converted directory, HF directory or GGUF file (default: SmolLM2-135M-Instruct)")
    s.add_argument("corrections", help='JSON lines: {"prompt": ..., "answer": ...[, "system": ...]}')
    s.add_argument("-o", "--output", required=True, metavar="ADAPTER", help="the adapter directory to write")
    s.add_argument("--adapter", metavar="PATH", default=None, help="start from this adapter (default: a new one)")
    s.add_argument("--steps", type=int, default=200, help="optimizer steps at most (default 200)")
    s.add_argument("--batch", type=int, default=8, help="corrections per optimizer step (default 8)")
    s.add_argument("-c", "--ctx-size", type=int, default=1024, metavar="N",
                   help="context size in tokens: the longest prompt + answer (default 1024)")
    add_tune_flags(s)
    s.set_defaults(func=cmd_tune)


def settings_from(args):
    from .trainer import TuneSettings
    kw = {"rule": args.rule, "threshold": args.threshold}
    for k in ("lr", "hold"):
        if getattr(args, k, None) is not None:
            kw[k] = getattr(args, k)
    return TuneSettings(**kw)


def read_corrections(path: str) -> list[dict]:
    """The file's corrections, each checked: bad lines are named before the model loads."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise VkharpError(f"{path} is not UTF-8 text") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError as e:
            raise VkharpError(f"{path}:{n}: not JSON ({e})") from None
        if not isinstance(d, dict) or not all(isinstance(d.get(k), str) and d[k].strip() for k in ("prompt", "answer")):
            raise VkharpError(f'{path}:{n}: each line needs "prompt" and "answer", non-empty strings')
        if "system" in d and not isinstance(d["system"], str):
            raise VkharpError(f'{path}:{n}: "system" must be a string')
        out.append(d)
    if not out:
        raise VkharpError(f"{path} holds no corrections")
    return out


def corrections_for(model, items: list[dict]):
    from .fix import Correction, answer_ids
    out = []
    for d in items:
        msgs = ([{"role": "system", "content": d["system"]}] if d.get("system") else []) + \
               [{"role": "user", "content": d["prompt"]}]
        p_ids, a_ids = answer_ids(model.tokenizer, msgs, d["answer"])
        out.append(Correction(d["prompt"], d["answer"], p_ids, a_ids))
    return out


def cmd_tune(args) -> int:
    from tqdm import tqdm
    from ..model import load
    from .fix import Tuner
    from .trainer import Trainer
    items = read_corrections(args.corrections)
    settings = settings_from(args)
    if args.steps < 1 or args.batch < 1:
        raise VkharpError("--steps and --batch must be at least 1")
    model = load(args.model, args.device, ctx=args.ctx_size, progress=sys.stderr.isatty())
    tuner = Tuner.load(model, args.adapter, settings) if args.adapter else Tuner(model, settings, rank=args.rank)
    tuner._ensure()
    trainer: Trainer = tuner.trainer
    corrections = corrections_for(model, items)
    examples = [c.example() for c in corrections]
    for e in examples:
        trainer.keep_base(e)
    bar = tqdm(total=args.steps, desc="tune", unit="step", file=sys.stderr, disable=None)
    pending, cursor, steps = list(range(len(examples))), 0, 0
    try:
        while steps < args.steps:
            pending = [i for i in range(len(examples)) if trainer.evaluate(examples[i]).n_mismatch] if cursor == 0 \
                else pending
            if not pending:
                break
            batch = pending[cursor:cursor + args.batch]
            cursor = cursor + args.batch if cursor + args.batch < len(pending) else 0
            rep = trainer.step([examples[i] for i in batch])
            if rep.applied:
                steps += 1
                bar.update(1)
            bar.set_postfix(loss=f"{rep.loss:.3f}", wrong=len(pending), updated=f"{rep.updated_fraction:.0%}")
    finally:
        bar.close()
        held = [trainer.evaluate(e).n_mismatch == 0 for e in examples]
        for c in corrections:
            c.steps = steps
        tuner.corrections = tuner.corrections + corrections
        tuner.adapter.corrections = [c.to_json() for c in tuner.corrections]
        path = tuner.save(args.output)
        print(f"vkharp tune: {sum(held)} of {len(held)} corrections reproduced after {steps} steps "
              f"({settings.rule}); adapter written to {path}", file=sys.stderr)
    return 0 if all(held) else 1
