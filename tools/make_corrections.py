"""Build data/corrections/: the prompts the default model answers wrongly, found by running it.

Each candidate (data/corrections/candidates.jsonl: prompt, answer, optional accept list) is asked
once through the model's chat template (as `vkharp chat` renders a first turn: the template's own
default system prompt, no history) and answered greedily with a small token limit; the replies go
to replies.jsonl. The unrelated prompts' greedy replies are written into unrelated.jsonl
(model_said): the untuned model's answers that drift is measured against.

A candidate is kept as a correction (smollm2-135m.jsonl) when neither its answer nor an accepted
variant appears in the reply as a whole word (case-insensitive, thousands commas and a
".0" after an integer ignored). A
numeric answer that the prompt itself contains ("144 / 12") must appear in the reply more often
than in the prompt, so an echoed question is not a right answer.

    PYTHONPATH=. python tools/make_corrections.py            # runs the model (~10 min on lavapipe)
    PYTHONPATH=. python tools/make_corrections.py --rejudge  # judges replies.jsonl again, no model
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "data" / "corrections"


def _norm(text: str) -> str:
    """Lower case, no thousands commas, no ".0" after an integer."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    return re.sub(r"(?<=\d)\.0+(?!\d)", "", text).lower()


def _count(text: str, answer: str) -> int:
    return len(re.findall(r"(?<![\w.])" + re.escape(_norm(answer)) + r"(?![\w]|\.\d)", _norm(text)))


def is_right(prompt: str, reply: str, answers: list[str]) -> bool:
    for a in answers:
        need = _count(prompt, a) + 1 if re.fullmatch(r"[\d,.]+", a) else 1
        if _count(reply, a) >= need:
            return True
    return False


def greedy_chat(model, prompt: str, tokens: int) -> str:
    tok = model.tokenizer
    ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": prompt}]), add_bos=False)
    model.reset()
    return "".join(s.text for s in model.generate(ids, temperature=0.0, max_tokens=tokens)).strip()


def _read(name: str) -> list[dict]:
    return [json.loads(line) for line in (HERE / name).read_text().splitlines() if line.strip()]


def _write(name: str, rows: list[dict]) -> None:
    with open(HERE / name, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def record(model_path, tokens: int) -> None:
    import engine
    model = engine.load(model_path, ctx=512)
    replies = []
    for c in _read("candidates.jsonl"):
        replies.append({"prompt": c["prompt"], "model_said": greedy_chat(model, c["prompt"], tokens)})
        print(f"  {c['prompt']!r} -> {replies[-1]['model_said']!r}", file=sys.stderr)
    _write("replies.jsonl", replies)
    unrelated = [{"prompt": u["prompt"], "model_said": greedy_chat(model, u["prompt"], tokens)}
                 for u in _read("unrelated.jsonl")]
    _write("unrelated.jsonl", unrelated)


def judge() -> tuple[int, int]:
    said = {r["prompt"]: r["model_said"] for r in _read("replies.jsonl")}
    cands = _read("candidates.jsonl")
    wrong = [{"prompt": c["prompt"], "answer": c["answer"], "model_said": said[c["prompt"]]} for c in cands
             if not is_right(c["prompt"], said[c["prompt"]], [c["answer"], *c.get("accept", [])])]
    _write("smollm2-135m.jsonl", wrong)
    return len(cands), len(wrong)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model path (default: the default model)")
    ap.add_argument("--tokens", type=int, default=24, help="greedy tokens per answer")
    ap.add_argument("--rejudge", action="store_true", help="judge the recorded replies again without the model")
    args = ap.parse_args(argv)
    t0 = time.time()
    if not args.rejudge:
        record(args.model, args.tokens)
    n, n_wrong = judge()
    print(f"{n} candidates: {n - n_wrong} right, {n_wrong} wrong (kept in smollm2-135m.jsonl); {time.time() - t0:.0f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
