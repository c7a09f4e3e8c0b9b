"""`vkharp bench [MODEL]`: load, prefill and decode speed against the bandwidth floor, where the time
of a token goes, and what HARP and rollback cost.

The floor: decoding one token must read every weight once, so tok/s can never beat
    device read bandwidth / weight bytes per token.
The bandwidth is measured here, through our own shader (a large buffer copied into another: bytes
read + written over time), so the ratio says how far the engine is from what this device can do.
Every figure is the median of `repeats` runs with the spread (max − min) / median, except the
decoding modes: the median of `repeats` rounds in which the modes take turns (the paper mode runs
once: it alone takes minutes on a CPU driver).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from .device import Device
from .kernel_bench import median_time

MODE_PROMPT = "Write a short story about a robot who learns to paint."


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def copy_bandwidth(dev: Device, nbytes: int = 64 << 20, repeats: int = 7) -> float:
    """Bytes per second moved (read + written) by our copy shader over a large buffer; the best of a
    few run lengths per invocation (CPU drivers want long streams, GPUs short coalesced ones)."""
    from .ops.elementwise import copy_bw
    n = (min(nbytes, dev.max_buffer_bytes) // 16) * 4
    a, b = dev.buffer(n), dev.buffer(n)
    best = 0.0
    for run in (1, 16, 256, 1024):
        rec = dev.recorder()
        copy_bw(rec, b, a, run=run)
        t, _ = median_time(rec.finish().run, repeats)
        best = max(best, 2 * n * 4 / t)
    return best


def decode_loop(model, first: int, n: int) -> None:
    """n greedy decode steps the way generation runs them: feed a token, sample on the device, read
    back the few result words, feed the drawn token."""
    from .forward import RING
    from .sampling import SamplerSettings, pack_sample_params, unpack_result
    words = pack_sample_params(SamplerSettings(temperature=0.0), u=0.5)
    ring = np.zeros(RING, np.uint32)
    tok = first
    for _ in range(n):
        tok = unpack_result(model.feed_and_sample([tok], words, ring)).token


def kernel_breakdown(model) -> tuple[list[tuple[str, int, float]], float]:
    """Per-kernel seconds of one decode step with sampling, from Vulkan timestamps:
    ([(kernel, dispatches, seconds)] largest first, total seconds of the timed steps)."""
    from . import ops
    from .forward import begin_program
    from .params import write_step
    rec, acts = begin_program(model, 1, "last", timestamps=True)
    ops.sample(rec, acts.sample_out, acts.logits, acts.sparams, acts.recent, vocab=model.cfg.vocab_size)
    prog = rec.finish()
    write_step(acts.step, pos=model.kv.pos, n_tokens=1)   # writes the next slot; kv.pos does not move
    for _ in range(3):
        prog.run()
    per = defaultdict(lambda: [0, 0.0])
    for step, t in prog.step_times():
        name = step.label if step.kind == "dispatch" else step.kind
        per[name][0] += 1
        per[name][1] += t
    rows = sorted(((k, c, t) for k, (c, t) in per.items()), key=lambda r: -r[2])
    return rows, sum(r[2] for r in rows)


def decoding_modes(model, tokens: int, paper_tokens: int, rounds: int = 1) -> list[dict]:
    """HARP off / paper / cached (greedy) and rollback off / on (llama.cpp's default sampling) on one
    chat prompt: ms per generated token, the fraction of hesitant steps, rollbacks per 100 tokens.

    Every mode but the paper's (minutes on a CPU driver) runs `rounds` times, the modes taking turns
    round by round, and keeps its median: a mode and its baseline then see the same drift of a shared
    host (one run each read HARP cached at 1.39x and 1.11x of greedy on the same host and build)."""
    tok = model.tokenizer
    text = tok.apply_chat_template([{"role": "user", "content": MODE_PROMPT}]) if tok.chat_template else MODE_PROMPT
    ids = tok.encode(text, add_bos=not tok.chat_template)
    cases = [("greedy", dict(temperature=0.0), tokens),
             ("greedy + HARP cached", dict(temperature=0.0, harp="cached"), tokens),
             ("greedy + HARP paper", dict(temperature=0.0, harp="paper"), paper_tokens),
             ("sampling", dict(seed=1), tokens),
             ("sampling + rollback", dict(seed=1, rollback=True), tokens)]
    runs = {name: [] for name, _, _ in cases}
    for round_ in range(max(1, rounds)):
        for name, kw, n in cases:
            if round_ and "paper" in name:
                continue
            model.reset()
            steps = list(model.generate(ids, max_tokens=n, **kw))
            timed = steps[1:] or steps                   # the first step carries the prompt
            runs[name].append((sum(s.ms for s in timed) / len(timed), steps))
    out = []
    for name, _, _ in cases:
        steps = runs[name][0][1]                       # the same tokens every round (greedy, seeded)
        out.append({"mode": name, "tokens": len(steps), "runs": len(runs[name]),
                    "ms_per_token": float(np.median([ms for ms, _ in runs[name]])),
                    "hesitant": sum(s.reframed for s in steps) / len(steps),
                    "rollbacks_per_100": 100 * sum(len(s.rollbacks) for s in steps) / len(steps)})
    base = {"greedy": out[0]["ms_per_token"], "sampling": out[3]["ms_per_token"]}
    for r in out:
        r["ratio"] = r["ms_per_token"] / base["greedy" if r["mode"].startswith("greedy") else "sampling"]
    return out


LLAMA_CPP_ENV = "VKHARP_LLAMA_CPP_PYTHON"
LLAMA_CPP_TOOL = Path(__file__).resolve().parent.parent / "tools" / "llama_cpp_bench.py"


def llama_cpp_python(flag: str | None) -> str | None:
    """The interpreter that runs llama.cpp for the comparison: --llama-cpp, else $VKHARP_LLAMA_CPP_PYTHON.
    llama-cpp-python wants numpy 2 and kp pins numpy < 2, so it lives in a venv of its own."""
    from .errors import VkharpError
    python = flag or os.environ.get(LLAMA_CPP_ENV) or None
    if python is not None and not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise VkharpError(f"bench: the llama.cpp interpreter {python!r} is not an executable file; give the python "
                          f"of a venv with llama-cpp-python (--llama-cpp or {LLAMA_CPP_ENV}; tools/llama_cpp_bench.py)")
    return python


def llama_cpp_external(python: str, gguf_path, prompt_sizes, decode_tokens: int, repeats: int) -> dict:
    """tools/llama_cpp_bench.py on the same GGUF under another interpreter, in this invocation: prefill
    tok/s per prompt size and decode tok/s, timed by the same code (llama_cpp_compare). A failure is
    reported as {"error": ...}, never fatal to the bench."""
    cmd = [python, str(LLAMA_CPP_TOOL), str(gguf_path), "--json", "--decode", str(decode_tokens),
           "--repeats", str(repeats), "--prompts", *map(str, prompt_sizes)]
    note = None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if p.returncode < 0:   # killed by a signal (SIGSEGV in its AMX path on some VMs): once more without
            first = p.returncode
            p = subprocess.run(cmd + ["--no-extra-bufts"], capture_output=True, text=True, timeout=3600)
            note = (f"llama.cpp died of signal {-first} with its extra buffer types (AMX, repacked weights); "
                    f"these figures are without them (--no-extra-bufts)")
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"{python}: {e}"}
    if p.returncode != 0:
        tail = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:] or ["no output"]
        return {"error": f"{python} tools/llama_cpp_bench.py exited {p.returncode}: {tail[0]}"}
    try:
        r = json.loads(p.stdout.strip().splitlines()[-1])
        r["prefill"] = {int(n): float(v) for n, v in r["prefill"].items()}
        r["decode_tok_s"] = float(r["decode_tok_s"])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return {"error": f"{python} tools/llama_cpp_bench.py printed no result line: {p.stdout[-200:]!r}"}
    r["python"] = python
    if note:
        r["note"] = note
    return r


def llama_cpp_compare(gguf_path, prompt, decode_tokens: int, repeats: int, extra_bufts: bool = True) -> dict | None:
    """The same GGUF through llama-cpp-python when it is importable (never a dependency).
    extra_bufts=False: without llama.cpp's extra weight buffer types (AMX, repacked layouts; llama.cpp's
    --no-extra-bufts), for hosts where they crash (a VM that lists AMX without granting its tiles)."""
    try:
        import llama_cpp
        from llama_cpp import Llama
    except ImportError:
        return None
    if not extra_bufts:
        defaults = llama_cpp.llama_model_default_params

        def no_extra_bufts():
            params = defaults()
            params.use_extra_bufts = False
            return params
        llama_cpp.llama_model_default_params = no_extra_bufts
        llama_cpp.llama.llama_cpp.llama_model_default_params = no_extra_bufts
    llm = Llama(model_path=str(gguf_path), n_ctx=len(prompt) + decode_tokens + 8, n_gpu_layers=-1, verbose=False)

    def prefill():
        llm.reset()
        llm.eval([int(t) for t in prompt])

    t_pre, _ = median_time(prefill, repeats, warmup=1)

    def decode():
        prefill()
        for _ in range(decode_tokens):
            llm.eval([int(prompt[-1])])
    t_all, _ = median_time(decode, repeats, warmup=0)
    return {"prefill_tok_s": len(prompt) / t_pre, "decode_tok_s": decode_tokens / max(t_all - t_pre, 1e-9)}


def program_structure(model) -> dict:
    """Dispatches, barriers and host↔device copies of the recorded programs: one decode token (N=1
    with the sampling stage) and one prefill chunk before the last (no head)."""
    out = {}
    for what, (n, head, readback) in (("decode token", (1, "last", "sample")),
                                      ("prefill chunk", (model.chunk, "none", "none"))):
        prog, _ = model._program(n, head, readback)
        out[what] = {"dispatches": prog.n_dispatches, "barriers": prog.n_barriers, "copies": prog.n_copies,
                     "tokens": n, "layers": model.cfg.num_hidden_layers}
    return out


def decode_at_contexts(model, contexts, tokens: int, repeats: int) -> dict:
    """Decode tok/s with the cache already holding c positions, for each c: how attention scales with
    the context. The cache is filled by bookkeeping only (its rows hold whatever they held): the cost
    of a step depends on how many rows attention reads, not on their values."""
    out = {}
    for c in contexts:
        def run(c=c):
            model.reset()
            model.kv.append(np.zeros(c, np.uint32))
            decode_loop(model, 1, tokens)
        t, spread = median_time(run, repeats, warmup=1)
        out[c] = {"tok_s": tokens / t, "spread": spread}
    model.reset()
    return out


def run_model_bench(path, device: int | None = None, *, prompt_sizes=(128, 512), decode_tokens: int = 128,
                    repeats: int = 3, modes: bool = True, mode_tokens: int = 64, paper_tokens: int = 24,
                    contexts=(128, 1024, 2000), context_tokens: int = 32,
                    json_path: str | None = None, out=sys.stdout, llama_cpp: str | None = None,
                    kv_type: str | None = None) -> dict:
    from .convert import default_model_path
    from .model import load
    from .errors import VkharpError
    prompt_sizes = sorted(set(int(p) for p in prompt_sizes))
    for name, v in (("prompt tokens", min(prompt_sizes, default=0)), ("decode tokens", decode_tokens),
                    ("repeats", repeats), ("mode tokens", mode_tokens if modes else 1)):
        if v < 1:
            raise VkharpError(f"bench: {name} must be at least 1, got {v}")
    contexts = sorted(set(int(c) for c in contexts))
    if contexts and contexts[0] < 1:
        raise VkharpError(f"bench: contexts must be at least 1, got {contexts[0]}")
    lc_python = llama_cpp_python(llama_cpp)   # checked before anything slow starts
    ctx = max(max(prompt_sizes) + decode_tokens, max(contexts, default=0) + context_tokens) + 8
    ctx = max(ctx, 512)
    rss0 = peak_rss_bytes()
    t0 = time.perf_counter()
    model = load(path, device, ctx=ctx, kv_type=kv_type)
    load_s = time.perf_counter() - t0
    rss_load = peak_rss_bytes()
    dev = model.device
    rng = np.random.default_rng(0)
    prompts = {n: rng.integers(3, model.cfg.vocab_size, n) for n in prompt_sizes}

    t_first = time.perf_counter()
    model.prefill(prompts[prompt_sizes[0]], readback="none")   # records the programs (pipelines compile here)
    decode_loop(model, int(prompts[prompt_sizes[0]][-1]), 1)
    warm_s = time.perf_counter() - t_first
    r = {"model": str(model.path), "device": dev.info.name, "load_s": load_s, "first_run_s": warm_s,
         "pipelines": dev.n_pipelines, "repeats": repeats, "prefill": {}, "weight_bytes": model.weight_bytes,
         "kv_type": model.kv_type, "kv_bytes": model.kv.nbytes}
    for n, p in prompts.items():
        def prefill(p=p):
            model.reset()
            model.prefill(p, readback="none")
        t, spread = median_time(prefill, repeats, warmup=1)
        r["prefill"][n] = {"tok_s": n / t, "spread": spread}

    p = prompts[prompt_sizes[0]]

    def decode():
        model.truncate(len(p) - 1)
        decode_loop(model, int(p[-1]), decode_tokens)
    model.reset()
    model.prefill(p, readback="none")
    t_dec, spread_dec = median_time(decode, repeats, warmup=1)
    r["decode_tok_s"], r["decode_spread"] = decode_tokens / t_dec, spread_dec
    r["decode_ms"] = t_dec / decode_tokens * 1e3
    if contexts:
        r["decode_at_context"] = decode_at_contexts(model, contexts, context_tokens, repeats)
    r["structure"] = program_structure(model)
    if dev.info.timestamps:
        rows, gpu_s = kernel_breakdown(model)
        r["kernels"] = [{"kernel": k, "dispatches": c, "ms": t * 1e3} for k, c, t in rows]
        r["kernels_ms"] = gpu_s * 1e3
        r["sampling_share"] = sum(t for k, _, t in rows if k.startswith("sample")) / (t_dec / decode_tokens)
    r["device_mb"] = dev.allocated_bytes / 2**20   # before the bandwidth probe's own two buffers
    bw = copy_bandwidth(dev)
    r["bandwidth_gb_s"], r["floor_tok_s"] = bw / 1e9, bw / model.weight_bytes
    r["decode_vs_floor"] = r["decode_tok_s"] / r["floor_tok_s"]
    if modes:
        r["modes"] = decoding_modes(model, mode_tokens, paper_tokens, repeats)
    r["peak_host_mb_load"] = (rss_load - rss0) / 2**20
    r["peak_host_mb"] = peak_rss_bytes() / 2**20
    src = path if path is not None else default_model_path()
    if str(src).endswith(".gguf"):
        if lc_python:
            r["llama_cpp"] = llama_cpp_external(lc_python, src, prompt_sizes, decode_tokens, repeats)
        else:
            lc = llama_cpp_compare(src, p, decode_tokens, repeats)
            r["llama_cpp"] = lc and {"prefill": {prompt_sizes[0]: lc["prefill_tok_s"]},
                                     "decode_tok_s": lc["decode_tok_s"], "python": sys.executable}
        lc = r["llama_cpp"]
        if lc and "error" not in lc:
            lc["ratios"] = {"decode": r["decode_tok_s"] / lc["decode_tok_s"],
                            **{f"prefill {n}": r["prefill"][n]["tok_s"] / t
                               for n, t in lc["prefill"].items() if n in r["prefill"]}}
    print_report(r, model, out)
    if json_path == "-":
        json.dump(r, sys.stdout, indent=1)
        print()
    elif json_path:
        with open(json_path, "w") as f:
            json.dump(r, f, indent=1)
    return r


def print_report(r: dict, model, out) -> None:
    def say(*a):
        print(*a, file=out)
    say(f"{model.cfg.model_type} from {r['model']} on {r['device']}")
    say(f"  load {r['load_s']:.2f} s (+{r['first_run_s']:.1f} s recording {r['pipelines']} pipelines on first use); "
        f"weights {r['weight_bytes'] / 2**20:.1f} MiB; {r['kv_type']} KV cache {r['kv_bytes'] / 2**20:.1f} MiB; "
        f"device memory {r['device_mb']:.0f} MiB; "
        f"peak host memory {r['peak_host_mb']:.0f} MiB (+{r['peak_host_mb_load']:.0f} MiB while loading)")
    for n, v in r["prefill"].items():
        say(f"  prefill {v['tok_s']:7.1f} tok/s  ({n}-token prompt, median of {r['repeats']}, spread {v['spread']:.0%})")
    say(f"  decode  {r['decode_tok_s']:7.1f} tok/s  ({r['decode_ms']:.1f} ms/token, median of {r['repeats']}, "
        f"spread {r['decode_spread']:.0%}; sampling on the device included)")
    say(f"  floor   {r['floor_tok_s']:7.1f} tok/s  = {r['bandwidth_gb_s']:.1f} GB/s (copy through our shader) / "
        f"{r['weight_bytes'] / 1e6:.1f} MB of weights per token; decode at {r['decode_vs_floor']:.0%} of it")
    if r.get("decode_at_context"):
        first = next(iter(r["decode_at_context"].values()))["tok_s"]
        say("  decode by context: " + ", ".join(
            f"{c}: {v['tok_s']:.1f} tok/s ({first / v['tok_s']:.2f}x the time of the first)"
            for c, v in r["decode_at_context"].items()))
    for what, c in r.get("structure", {}).items():
        say(f"  {what:<14} {c['dispatches']} dispatches ({c['dispatches'] / c['layers']:.1f} per layer), "
            f"{c['barriers']} barriers, {c['copies']} buffer copies host<->device ({c['tokens']} token slots)")
    if "kernels" in r:
        say(f"  one decode step by kernel (Vulkan timestamps; {r['kernels_ms']:.1f} ms timed of "
            f"{r['decode_ms']:.1f} ms wall; sampling stage {r['sampling_share']:.1%} of a step):")
        for k in r["kernels"][:10]:
            say(f"    {k['kernel']:<28} {k['dispatches']:4d} x  {k['ms']:7.2f} ms")
    if "modes" in r:
        rounds = max(m["runs"] for m in r["modes"])
        say(f"  decoding modes (median of {rounds} rounds taking turns, the paper mode once; ratio to the same "
            f"mode without HARP/rollback):")
        say(f"    {'mode':<22} {'tokens':>6} {'ms/token':>9} {'ratio':>6} {'hesitant':>9} {'rollbacks/100':>14}")
        for m in r["modes"]:
            say(f"    {m['mode']:<22} {m['tokens']:6d} {m['ms_per_token']:9.1f} {m['ratio']:6.2f} "
                f"{m['hesitant']:9.0%} {m['rollbacks_per_100']:14.1f}")
    if "llama_cpp" in r:
        lc = r["llama_cpp"]
        if lc is None:
            say(f"  llama.cpp: not compared (give --llama-cpp PYTHON or {LLAMA_CPP_ENV}: the python of a venv "
                f"with llama-cpp-python; tools/llama_cpp_bench.py says how to build one)")
        elif "error" in lc:
            say(f"  llama.cpp: {lc['error']}")
        else:
            say("  llama.cpp on the same GGUF, same run: " + ", ".join(
                [f"prefill {n}: {t:.1f} tok/s" for n, t in lc["prefill"].items()] + [f"decode {lc['decode_tok_s']:.1f} tok/s"]))
            say("  vkharp / llama.cpp: " + ", ".join(f"{k} {v:.2f}x" for k, v in lc["ratios"].items()))
            if lc.get("note"):
                say(f"  ({lc['note']})")
