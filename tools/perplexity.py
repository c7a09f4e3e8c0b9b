#!/usr/bin/env python3
"""Perplexity of one model converted to several weight formats, ours next to transformers on the
same (dequantized) weights: the numbers in the README's fidelity table.

  python tools/perplexity.py                    # the default model, f32 f16 q8_0 q4_1, README text
  python tools/perplexity.py SRC --dtypes f16 q8_0 --text FILE

Each conversion is cached (engine.convert.ensure_converted). transformers is a test extra, not a
runtime dependency; without it only our column is printed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEXT = ("The history of the city goes back more than two thousand years. It was founded on the banks of a "
        "river, where merchants met to trade grain, wool and salt. Over the centuries it grew into a busy port, "
        "and its markets drew people from every corner of the country. Today it is known for its old bridges, "
        "its narrow streets and its many museums, which attract visitors from all over the world.")


def perplexity(logits: np.ndarray, ids: np.ndarray) -> float:
    z = logits[:-1].astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(np.exp(-logp[np.arange(len(ids) - 1), ids[1:]].mean()))


def transformers_logits(path: Path, ids: np.ndarray) -> np.ndarray | None:
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        return None
    from engine import quant
    from engine.convert import open_model_dir
    m = open_model_dir(path)
    hf = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)).float().eval()
    hf.load_state_dict({n: torch.from_numpy(np.ascontiguousarray(
        quant.dequantize(v) if isinstance(v, quant.Packed) else v)) for n in m.tensor_names for v in [m.load(n)]},
        strict=False)
    with torch.no_grad():
        return hf(torch.tensor(ids[None])).logits[0].numpy()


def main() -> int:
    from engine.convert import default_model_path, ensure_converted
    from engine.device import Device
    from engine.model import Model
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", nargs="?", default=None)
    p.add_argument("--dtypes", nargs="+", default=["auto", "f32", "f16", "q8_0", "q4_1"],
                   help="auto = the source's own formats (a GGUF's types kept as they are)")
    p.add_argument("--text", default=None, help="a text file (default: a fixed English paragraph)")
    args = p.parse_args()
    src = Path(args.src) if args.src else default_model_path()
    text = Path(args.text).read_text() if args.text else TEXT
    dev = Device()
    print(f"{'format':<7} {'ours':>8} {'transformers':>13} {'rel diff':>9}  tokens")
    for dtype in args.dtypes:
        path = ensure_converted(src, dtype=None if dtype == "auto" else dtype, progress=False)
        model = Model(path, dev, ctx=1024)
        ids = np.array(model.tokenizer.encode(text))
        ours = perplexity(model.logits(ids), ids)
        ref = transformers_logits(path, ids)
        theirs = perplexity(ref, ids) if ref is not None else float("nan")
        print(f"{dtype:<7} {ours:8.3f} {theirs:13.3f} {abs(ours - theirs) / theirs:9.1e}  {len(ids)}")
        model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
