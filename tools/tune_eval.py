"""Measure the sources' training ideas on the default model: each loss rule, with and without the
gradient threshold, fixing the corrections of data/corrections/ one after another (as /fix does).

Earlier fixes are not retrained here (the chat's /fix retrains those a later fix broke), so the
survival column measures the rule itself. Per configuration it reports: success rate (the correction reproduced by teacher-forced greedy
within --steps), optimizer steps and seconds per success, whether earlier fixes still hold after the
last one, perplexity on data/corrections/heldout.txt, and agreement of greedy answers to the
unrelated prompts with the untuned model's (data/corrections/unrelated.jsonl; exact text and the
shared-prefix fraction of tokens).

    python tools/tune_eval.py -o docs/tune_eval.jsonl --table tune_eval.md [--corrections 16] [--steps 20]

Results are appended per configuration (--resume skips those already in the file).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "data" / "corrections"
# Every loss of the default model's convention, each without and with the gradient threshold (seed
# idea 5); target-only needs a model trained in its output convention (tools/local1d_study.py).
RULES = ("ce", "first-mismatch", "mismatch-only", "span", "position-edit")
THRESHOLD = 3e-4
CONFIGS = [(rule, thr) for rule in RULES for thr in (0.0, THRESHOLD)]


def perplexity(model, text: str) -> float:
    ids = np.asarray(model.tokenizer.encode(text), np.uint32)
    model.reset()
    logits = model.logits(ids).astype(np.float64)
    z = logits[:-1] - logits[:-1].max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -lp[np.arange(len(ids) - 1), ids[1:]].mean()
    model.reset()
    return float(np.exp(nll))


def greedy(model, prompt: str, n: int) -> list[int]:
    from engine.settings import GenerationSettings
    ids = model.tokenizer.encode(model.tokenizer.apply_chat_template([{"role": "user", "content": prompt}]),
                                 add_bos=False)
    model.reset()
    return [s.token for s in model.generate(ids, GenerationSettings(temperature=0.0, max_tokens=n)) if s.token is not None]


def run_config(model, rule, threshold, corrections, unrelated, base_answers, steps, rank):
    from engine.tune.cli import corrections_for
    from engine.tune.fix import Tuner
    from engine.tune.trainer import TuneSettings
    tuner = Tuner(model, TuneSettings(rule=rule, threshold=threshold), rank=rank, keep_earlier=False)
    rows = []
    for c in corrections_for(model, corrections):
        if rule == "span":     # seed idea 3: the answer's text weighs 3x its end-of-turn token
            ex = c.example()
            w = np.full(len(ex.targets), 3.0, np.float32)
            w[-1] = 1.0
            c.example = (lambda ex=ex, w=w: type(ex)(ex.ids, ex.start, weights=w, text=ex.text))
        upd = []
        r = tuner.fix(c, max_steps=steps, on_step=lambda rep: upd.append(rep.updated_fraction) if rep.applied else None)
        rows.append({"prompt": c.prompt, "success": r.success, "steps": r.steps, "seconds": r.seconds,
                     "updated": float(np.mean(upd)) if upd else 0.0})
        print(f"  {rule} thr={threshold:g}: {c.answer!r} {'ok' if r.success else 'FAILED'} in {r.steps} steps "
              f"{r.seconds:.1f}s", file=sys.stderr, flush=True)
    held = [ok for _, ok in tuner.check()]
    ppl = perplexity(model, (DATA / "heldout.txt").read_text(encoding="utf-8"))
    exact, prefix = [], []
    for u, base in zip(unrelated, base_answers):
        got = greedy(model, u["prompt"], len(base))
        exact.append(got == base)
        k = next((i for i, (a, b) in enumerate(zip(got, base)) if a != b), min(len(got), len(base)))
        prefix.append(k / max(1, len(base)))
    tuner.drop()
    ok = [r for r in rows if r["success"]]
    return {"rule": rule, "threshold": threshold, "n": len(rows), "success": len(ok) / len(rows),
            "steps": float(np.mean([r["steps"] for r in ok])) if ok else None,
            "seconds": float(np.mean([r["seconds"] for r in ok])) if ok else None,
            "updated": float(np.mean([r["updated"] for r in rows])),
            "survive": float(np.mean(held)) if held else None, "ppl": ppl,
            "agree_exact": float(np.mean(exact)), "agree_prefix": float(np.mean(prefix)), "fixes": rows}


def table(results, base_ppl) -> str:
    out = [f"Untuned: perplexity {base_ppl:.2f} on heldout.txt; agreement 100 % by definition.", "",
           "| loss | threshold | success | steps / success | s / success | params updated | earlier fixes hold at the end | perplexity | unrelated answers identical | tokens agreeing (prefix) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        f = lambda v, fmt: "–" if v is None else fmt.format(v)
        out.append(f"| {r['rule']} | {r['threshold']:g} | {r['success']:.0%} ({r['n']}) | {f(r['steps'], '{:.1f}')} | "
                   f"{f(r['seconds'], '{:.1f}')} | {r['updated']:.0%} | {f(r['survive'], '{:.0%}')} | {r['ppl']:.2f} | "
                   f"{r['agree_exact']:.0%} | {r['agree_prefix']:.0%} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--table", default=None)
    ap.add_argument("--corrections", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, help="rules to run (default: all)")
    args = ap.parse_args(argv)
    from engine.model import load
    model = load(None, ctx=512)
    corrections = [json.loads(l) for l in (DATA / "smollm2-135m.jsonl").read_text().splitlines() if l.strip()]
    corrections = corrections[:args.corrections]
    unrelated = [json.loads(l) for l in (DATA / "unrelated.jsonl").read_text().splitlines() if l.strip()]
    base_ppl = perplexity(model, (DATA / "heldout.txt").read_text(encoding="utf-8"))
    base_answers = [greedy(model, u["prompt"], 24) for u in unrelated]
    done = []
    out = Path(args.output)
    if args.resume and out.exists():
        done = [json.loads(l) for l in out.read_text().splitlines() if l.strip()]
    for rule, thr in CONFIGS:
        if args.only and rule not in args.only:
            continue
        if any(d["rule"] == rule and d["threshold"] == thr for d in done):
            continue
        t0 = time.perf_counter()
        res = run_config(model, rule, thr, corrections, unrelated, base_answers, args.steps, args.rank)
        res["wall_s"] = time.perf_counter() - t0
        done.append(res)
        with out.open("a") as f:
            f.write(json.dumps(res) + "\n")
        if args.table:
            Path(args.table).write_text(table(done, base_ppl))
        print(table([res], base_ppl), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
