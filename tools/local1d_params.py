#!/usr/bin/env python3
"""Parameter counts of a dense SwiGLU decoder and of a vkharp_local1d one of the same attention and
vocabulary, to pick equal-parameter pairs (the seed's claim: neurons matter more than parameters).

    tools/local1d_params.py --hidden 64 --layers 4 --vocab 49152 --dense-width 256 --local1d-width 4096
    tools/local1d_params.py ... --kernel 5          # a given Local1D window instead of the matching one

Both models share everything but the MLP (embeddings, q/k/v/o, norms, head: tied unless --untied), so
the pair differs only in how the MLP spends its parameters: 3·hidden·F dense, 2·F·K_in + hidden·K_out
Local1D (K_out defaults to the smallest gap-free down window, about F / hidden). Without --kernel, K_in
is the window whose total comes closest to the dense model's. Counts come from the architectures'
own tensor lists (models/*.py: Architecture.n_params), so they are what the checkpoints hold.

    from tools.local1d_params import compare      (with the repository root on sys.path)
    compare(hidden=64, layers=4, vocab=49152, dense_width=256, local1d_width=4096) -> dict
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import ModelConfig, get_architecture  # noqa: E402


def _shared(hidden, layers, vocab, heads, kv_heads, tied) -> dict:
    return {"vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "tie_word_embeddings": tied, "hidden_act": "silu"}


def count(config: dict) -> dict:
    """{"total", "mlp", "rest", "mlp_width", "read_units"} of a config.json dict (checked as the engine
    checks it). read_units: MLP units per layer that some output reads (all of them for dense)."""
    cfg = ModelConfig.from_hf(config)
    arch = get_architecture(cfg.model_type)
    arch.validate(cfg)
    shapes = arch.tensor_shapes(cfg)
    mlp = sum(int(_prod(s)) for n, s in shapes.items() if ".mlp." in n)
    total = arch.n_params(cfg)
    read = cfg.intermediate_size - (arch.unread_units(cfg) if hasattr(arch, "unread_units") else 0)
    return {"total": total, "mlp": mlp, "rest": total - mlp, "mlp_width": cfg.intermediate_size, "read_units": read}


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def dense_config(*, hidden, layers, vocab, width, heads, kv_heads, tied=True) -> dict:
    return {"model_type": "llama", "intermediate_size": width, **_shared(hidden, layers, vocab, heads, kv_heads, tied)}


def local1d_config(*, hidden, layers, vocab, width, kernel, heads, kv_heads, tied=True, down_kernel=None) -> dict:
    d = {"model_type": "vkharp_local1d", "intermediate_size": width, "local1d_kernel": kernel,
         **_shared(hidden, layers, vocab, heads, kv_heads, tied)}
    if down_kernel is not None:
        d["local1d_down_kernel"] = down_kernel
    return d


def compare(*, hidden: int, layers: int, vocab: int, dense_width: int, local1d_width: int, heads: int = 4,
            kv_heads: int | None = None, tied: bool = True, kernel: int | None = None,
            down_kernel: int | None = None) -> dict:
    """The dense model and the Local1D one (at `kernel`, or the K_in that brings its total closest to
    the dense total), each as count() plus its config."""
    kv_heads = kv_heads or heads
    dense = dense_config(hidden=hidden, layers=layers, vocab=vocab, width=dense_width, heads=heads, kv_heads=kv_heads,
                         tied=tied)
    dense_n = count(dense)

    def local(k):
        c = local1d_config(hidden=hidden, layers=layers, vocab=vocab, width=local1d_width, kernel=k, heads=heads,
                           kv_heads=kv_heads, tied=tied, down_kernel=down_kernel)
        return c, count(c)

    if kernel is None:
        kernel = min(range(1, hidden + 1), key=lambda k: abs(local(k)[1]["total"] - dense_n["total"]))
    cfg, n = local(kernel)
    return {"dense": {**dense_n, "config": dense}, "local1d": {**n, "config": cfg},
            "ratio": n["total"] / dense_n["total"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, required=True)
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--vocab", type=int, required=True)
    p.add_argument("--dense-width", type=int, required=True, help="the dense SwiGLU MLP's intermediate_size")
    p.add_argument("--local1d-width", type=int, required=True, help="the Local1D MLP's width F (units)")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=None, help="default: --heads")
    p.add_argument("--untied", action="store_true", help="a head of its own (default: tied to the embeddings)")
    p.add_argument("--kernel", type=int, default=None, help="K_in (default: the one matching the dense total)")
    p.add_argument("--down-kernel", type=int, default=None, help="K_out (default: the smallest gap-free one)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    from engine.errors import VkharpError
    try:
        r = compare(hidden=a.hidden, layers=a.layers, vocab=a.vocab, dense_width=a.dense_width,
                    local1d_width=a.local1d_width, heads=a.heads, kv_heads=a.kv_heads, tied=not a.untied,
                    kernel=a.kernel, down_kernel=a.down_kernel)
    except VkharpError as e:
        print(f"local1d_params: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(r, indent=1))
        return 0
    d, l = r["dense"], r["local1d"]
    lc = l["config"]
    k_out = get_architecture("vkharp_local1d").kernels(ModelConfig.from_hf(lc))[1]
    print(f"{'':28}{'total':>12}{'MLP':>12}{'rest':>12}{'MLP width':>11}{'units read':>12}")
    print(f"{'dense SwiGLU':28}{d['total']:>12,}{d['mlp']:>12,}{d['rest']:>12,}{d['mlp_width']:>11,}"
          f"{d['read_units']:>12,}")
    name = f"Local1D K_in={lc['local1d_kernel']} K_out={k_out}"
    print(f"{name:28}{l['total']:>12,}{l['mlp']:>12,}{l['rest']:>12,}{l['mlp_width']:>11,}{l['read_units']:>12,}")
    print(f"Local1D / dense parameters: {r['ratio']:.3f}; MLP width x{l['mlp_width'] / d['mlp_width']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
