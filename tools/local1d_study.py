#!/usr/bin/env python3
"""The seed's claim measured (idea 10: "the number of neurons matters more than the number of
parameters"): Local1D models and dense baselines of equal parameter count, trained from scratch on
the device (engine/tune/scratch.py) on the same text, their validation loss against parameters and
against MLP width.

    PYTHONPATH=. python tools/local1d_study.py -o study/ [--steps 600] [--only dense-128 local1d-2048]
    PYTHONPATH=. python tools/local1d_study.py -o study/ --table      # the table of what has run

The text is the Project Gutenberg book reasoning-gym ships (Verne, "In the year 2889", its licence
header and footer cut), split 90/10 into training and validation text at a paragraph. A byte-level
BPE of 512 tokens is trained on the training text (tokenizers), so the embeddings stay small beside
the MLPs being compared. Every model: hidden 64, 2 layers, 4 heads (2 KV heads), tied embeddings,
sequences of 64 tokens, batches of 4, AdamW at a cosine learning rate (warm-up 10 steps) peaking at
3e-3 and, in a second run, at 1e-2 (the table keeps each model's better one: no single rate suits
every width), transformers' initialisation (N(0, 0.02)), the same seed and the same batches. Each Local1D model's window is the
one that brings its total closest to its dense partner's (tools/local1d_params.py). One JSON line per
run is appended to OUT/results.jsonl (--resume skips those there); each trained model is saved as a
checkpoint (OUT/NAME-lrX/trained) that `vkharp convert` / chat / bench read like any other.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from local1d_params import compare  # noqa: E402

SHAPE = dict(hidden=64, layers=2, vocab=512, heads=4, kv_heads=2, tied=True)
SEQ, BATCH, WARMUP = 64, 4, 10
LRS = (3e-3, 1e-2)    # peak learning rates: each model runs at each, and the table keeps its best
# (name, dense MLP width it is matched to, Local1D width or None for the dense model, output convention)
GRID = [
    ("dense-128", 128, None, "logits"),
    ("local1d-512", 128, 512, "logits"),
    ("local1d-2048", 128, 2048, "logits"),
    ("local1d-8192", 128, 8192, "logits"),
    ("dense-512", 512, None, "logits"),
    ("local1d-2048-big", 512, 2048, "logits"),
    ("local1d-8192-big", 512, 8192, "logits"),
    ("local1d-2048-target-only", 128, 2048, "target-only"),
]


# A book has no chat format; this plain one lets `vkharp chat` talk to a trained model like any other.
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n\n{% endfor %}"
                 "{% if add_generation_prompt %}Assistant:{% endif %}")


def book_text() -> str:
    import reasoning_gym
    raw = (Path(reasoning_gym.__file__).parent / "data" / "in_the_year_2889.txt").read_text(encoding="utf-8")
    start, end = raw.find("*** START OF"), raw.find("*** END OF")
    if start >= 0:
        raw = raw[raw.index("\n", start) + 1:]
    if end >= 0:
        raw = raw[:raw.find("*** END OF")]
    return raw.strip()


def split(text: str, frac: float = 0.9) -> tuple[str, str]:
    cut = text.rfind("\n\n", 0, int(len(text) * frac))
    return text[:cut], text[cut:].lstrip()


def make_tokenizer(train_text: str, out: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=SHAPE["vocab"], special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([train_text], trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": False,
         "chat_template": CHAT_TEMPLATE}, indent=1) + "\n")
    return out


def config_of(dense_width: int, width: int | None, convention: str) -> tuple[dict, dict]:
    """(config.json dict, parameter counts) of one grid entry."""
    pair = compare(hidden=SHAPE["hidden"], layers=SHAPE["layers"], vocab=SHAPE["vocab"], dense_width=dense_width,
                   local1d_width=width or 4 * SHAPE["hidden"], heads=SHAPE["heads"], kv_heads=SHAPE["kv_heads"],
                   tied=SHAPE["tied"])
    side = pair["dense"] if width is None else pair["local1d"]
    cfg = dict(side["config"], rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=2048,
               bos_token_id=0, eos_token_id=0, torch_dtype="float32")
    if width is not None:
        cfg.update(architectures=["VkharpLocal1DForCausalLM"], output_convention=convention)
    else:
        cfg.update(architectures=["LlamaForCausalLM"], hidden_act="silu")
    return cfg, {k: side[k] for k in ("total", "mlp", "rest", "mlp_width", "read_units")}


def write_checkpoint(cfg: dict, tok: Path, out: Path, seed: int) -> Path:
    from engine.tune.local1d_torch import build, copy_tokenizer, save_checkpoint
    from engine.tune.scratch import init_weights
    if cfg["model_type"] == "vkharp_local1d":
        return save_checkpoint(init_weights(build(cfg), seed), out, tokenizer_from=tok)
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    model = init_weights(LlamaForCausalLM(LlamaConfig(**{k: v for k, v in cfg.items() if k != "model_type"})), seed)
    model.save_pretrained(out, safe_serialization=True)
    copy_tokenizer(out, tok)
    return out


def run_one(name, dense_width, width, convention, *, out: Path, tok: Path, train, val, steps, device, lr: float,
            seed=0) -> dict:
    from engine.convert import convert
    from engine.model import Model
    from engine.tune.scratch import FullWeights, evaluate_sequences, train_sequences
    from engine.tune.trainer import Trainer, TuneSettings
    cfg, counts = config_of(dense_width, width, convention)
    d = out / f"{name}-lr{lr:g}"
    src = write_checkpoint(cfg, tok, d / "init", seed)
    convert(src, d / "init-converted", dtype="f32", progress=False)
    model = Model(d / "init-converted", device, ctx=SEQ, fuse=False)
    weights = FullWeights(model)
    rule = "target-only" if convention == "target-only" else "ce"
    trainer = Trainer(model, weights, TuneSettings(rule=rule, lr=lr, hold=0.0, max_grad_norm=1.0))
    curve = [{"step": 0, **evaluate_sequences(trainer, val)}]
    t0, train_s, first_s = time.perf_counter(), 0.0, 0.0
    every = max(1, steps // 3)

    def on_step(step, rep):
        nonlocal train_s, first_s
        train_s += rep.seconds
        if step == 0:
            first_s = rep.seconds            # recording and compiling the programs: left out of tok/s
        if (step + 1) % every == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "train_loss": rep.loss, **evaluate_sequences(trainer, val)})
            print(f"  {name}: step {step + 1}/{steps} train {rep.loss:.3f} val {curve[-1]['loss']:.3f} "
                  f"acc {curve[-1]['accuracy']:.3f} ({train_s:.0f} s training)", flush=True)

    train_sequences(trainer, train, steps=steps, batch=BATCH, lr=lr, warmup=WARMUP, seed=seed, on_step=on_step)
    weights.save(d / "trained", tokenizer_from=tok)
    k = cfg.get("local1d_kernel")
    return {"name": name, "kind": "local1d" if width else "dense", "convention": convention,
            "matched_to_dense_width": dense_width, "kernel": k,
            "down_kernel": model.arch.kernels(model.cfg)[1] if width else None, **counts,
            "rule": rule, "lr": lr, "steps": steps, "batch": BATCH, "seq": SEQ, "tokens_trained": steps * BATCH * SEQ,
            "train_seconds": round(train_s, 1), "seconds": round(time.perf_counter() - t0, 1),
            "first_step_seconds": round(first_s, 1),
            "tok_per_s": round((steps - 1) * BATCH * SEQ / max(train_s - first_s, 1e-9), 1), "val": curve[-1], "curve": curve,
            "device": device.info.name}


def best(results: list[dict]) -> list[dict]:
    """Per model, the run of the lowest validation loss (over the learning rates tried), in grid order."""
    keep = {}
    for r in results:
        if r["name"] not in keep or r["val"]["loss"] < keep[r["name"]]["val"]["loss"]:
            keep[r["name"]] = r
    order = [g[0] for g in GRID]
    return sorted(keep.values(), key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))


def table(results: list[dict], *, every: bool = False) -> str:
    """The markdown table: each model at its best learning rate (every=True: every run)."""
    rows = ["| model | MLP width | K_in / K_out | parameters (MLP) | peak lr | val loss | val accuracy | training |",
            "|---|---|---|---|---|---|---|---|"]
    for r in (results if every else best(results)):
        k = f"{r['kernel']} / {r['down_kernel']}" if r["kind"] == "local1d" else "dense"
        loss = f"{r['val']['loss']:.3f}" + (" (target-only: mean y²)" if r["convention"] == "target-only" else "")
        rows.append(f"| {r['name']} | {r['mlp_width']:,} | {k} | {r['total']:,} ({r['mlp']:,}) | {r['lr']:g} | {loss} | "
                    f"{r['val']['accuracy']:.3f} | {r['train_seconds']:.0f} s, {r['tok_per_s']:.0f} tok/s |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, nargs="+", default=list(LRS), help="peak learning rates to try")
    ap.add_argument("--only", nargs="*", default=None, help="grid entries to run (default: all)")
    ap.add_argument("--resume", action="store_true", help="skip entries already in OUT/results.jsonl")
    ap.add_argument("--table", action="store_true", help="print the table of OUT/results.jsonl and stop")
    ap.add_argument("--every", action="store_true", help="the table lists every run, not each model's best")
    a = ap.parse_args(argv)
    res_path = a.out / "results.jsonl"
    done = [json.loads(l) for l in res_path.read_text().splitlines() if l.strip()] if res_path.exists() else []
    if a.table:
        print(table(done, every=a.every))
        return 0
    from engine.device import Device
    from engine.tokenizer import Tokenizer
    a.out.mkdir(parents=True, exist_ok=True)
    train_text, val_text = split(book_text())
    tok = make_tokenizer(train_text, a.out / "tokenizer")
    tk = Tokenizer(tok)
    from engine.tune.scratch import windows
    train, val = windows(tk.encode(train_text), SEQ), windows(tk.encode(val_text), SEQ)
    print(f"text: {len(train_text):,} + {len(val_text):,} characters; {len(train)} training and {len(val)} "
          f"validation sequences of {SEQ} tokens (vocabulary {SHAPE['vocab']})", flush=True)
    device = Device()
    ran = {(r["name"], r["lr"]) for r in done} if a.resume else set()
    for name, dw, w, conv in GRID:
        for lr in a.lr:
            if (a.only and name not in a.only) or (name, lr) in ran:
                continue
            r = run_one(name, dw, w, conv, out=a.out, tok=tok, train=train, val=val, steps=a.steps,
                        device=device, lr=lr)
            r.update(train_sequences=len(train), val_sequences=len(val), date=time.strftime("%Y-%m-%d"))
            with res_path.open("a") as f:
                f.write(json.dumps(r) + "\n")
            done.append(r)
    print(table(done, every=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
