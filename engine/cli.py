"""The `vkharp` command line: devices, selfcheck, bench (more commands arrive with the model runtime).

User errors (VkharpError: no Vulkan, bad device index, bad input) print one clear line on stderr and
exit with status 2; never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from .errors import VkharpError


def _add_device(p: argparse.ArgumentParser, top: bool = False):
    # Subcommands repeat the option; SUPPRESS keeps `vkharp --device 1 selfcheck` working.
    p.add_argument("--device", type=int, default=None if top else argparse.SUPPRESS, metavar="N",
                   help="Vulkan device index (default: $VKHARP_DEVICE or 0; see `vkharp devices`)")


def cmd_devices(args) -> int:
    from .device import list_devices
    devices = list_devices()
    for d in devices:
        print(f"[{d.index}] {d.name}  ({d.type}, Vulkan {d.api_version})")
        print(f"     max storage buffer {d.max_storage_buffer_range / 2**20:.0f} MiB, "
              f"shared memory {d.max_shared_memory // 1024} KiB, work-group ≤ {d.max_workgroup_invocations} "
              f"invocations, subgroup {d.subgroup_size}, device-local memory {d.device_local_bytes / 2**30:.1f} GiB, "
              f"timestamps {'yes' if d.timestamps else 'no'}")
    return 0


def cmd_selfcheck(args) -> int:
    from .device import Device
    from .selfcheck import run_selfcheck
    dev = Device(args.device)
    print(f"self-check on [{dev.index}] {dev.info.name}")
    ok = run_selfcheck(dev, out=sys.stdout)
    return 0 if ok else 1


def cmd_bench(args) -> int:
    if args.kernels:
        from .device import Device
        from .kernel_bench import run_kernel_bench
        run_kernel_bench(Device(args.device), out=sys.stdout, quick=args.quick, json_path=args.json)
        return 0
    from .bench import run_model_bench
    run_model_bench(args.model, args.device, prompt_tokens=args.prompt_tokens, decode_tokens=args.decode_tokens,
                    repeats=2 if args.quick else 3, json_path=args.json)
    return 0


def cmd_generate(args) -> int:
    """One-shot completion (or one chat turn with --chat): text on stdout, statistics on stderr."""
    import time

    from .generate import generate
    from .model import load
    from .settings import GenerationSettings
    prompt = args.prompt if args.prompt is not None else sys.stdin.read()
    settings = GenerationSettings(temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                                  repeat_penalty=args.repeat_penalty, max_tokens=args.max_tokens, seed=args.seed)
    model = load(args.model, args.device, ctx=args.ctx_size, progress=sys.stderr.isatty())
    if args.chat:
        prompt = model.tokenizer.apply_chat_template([{"role": "user", "content": prompt}])
        ids = model.tokenizer.encode(prompt, add_bos=False)
    else:
        ids = model.tokenizer.encode(prompt)
    if len(ids) >= model.ctx:
        raise VkharpError(f"the prompt has {len(ids)} tokens but the context holds {model.ctx}; "
                          f"shorten it or raise --ctx-size")
    t0, n, first = time.perf_counter(), 0, None
    finish = None
    for step in generate(model, ids, settings):
        if first is None:
            first = time.perf_counter()
        sys.stdout.write(step.text)
        sys.stdout.flush()
        n += step.token >= 0
        finish = step.finish
    t1 = time.perf_counter()
    print(file=sys.stdout, flush=True)
    decode_s = t1 - first if first else 0.0
    print(f"[{len(ids)} prompt tokens in {first - t0:.2f} s; {n} tokens, "
          f"{(n - 1) / decode_s if n > 1 and decode_s else 0:.1f} tok/s; finish: {finish}]", file=sys.stderr)
    return 0


def cmd_main(args) -> int:
    """No command: the main job. Until the chat lands: devices, the kernel self-check, then one chat
    turn with the default model (converted on first use)."""
    rc = cmd_devices(args)
    print()
    rc = rc or cmd_selfcheck(args)
    if rc:
        return rc
    print("\nDefault model (SmolLM2-135M-Instruct), one chat turn: What is the capital of France?")
    demo = build_parser().parse_args(["generate", "--chat", "-p", "What is the capital of France?", "-n", "48"])
    demo.device = args.device
    return cmd_generate(demo)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vkharp", description="Portable LLM inference on any Vulkan GPU.")
    _add_device(p, top=True)
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("devices", help="list Vulkan devices and the limits vkharp relies on")
    s.set_defaults(func=cmd_devices)
    from .convert import cli as convert_cli
    s = sub.add_parser("convert", help=convert_cli.HELP)
    convert_cli.add_arguments(s)
    s.set_defaults(func=convert_cli.run)
    s = sub.add_parser("generate", help="complete a prompt (text on stdout, statistics on stderr)")
    _add_device(s)
    s.add_argument("model", nargs="?", default=None,
                   help="converted directory, HF directory or GGUF file (default: SmolLM2-135M-Instruct)")
    s.add_argument("-p", "--prompt", default=None, help="the prompt (default: read stdin)")
    s.add_argument("--chat", action="store_true", help="format the prompt as one user turn with the chat template")
    s.add_argument("-n", "--max-tokens", type=int, default=128, help="tokens to generate at most (default 128)")
    s.add_argument("-c", "--ctx-size", type=int, default=2048, help="context size in tokens (default 2048)")
    s.add_argument("--temp", type=float, default=0.0, help="temperature; 0 = greedy (default 0)")
    s.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens; 0 = off")
    s.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass; 1 = off")
    s.add_argument("--min-p", "--top-t", dest="min_p", type=float, default=0.0,
                   help="topT: drop tokens below this fraction of the top probability; 0 = off")
    s.add_argument("--repeat-penalty", type=float, default=1.0, help="repetition penalty; 1 = off")
    s.add_argument("--seed", type=int, default=0, help="seed of the host's random draws (default 0)")
    s.set_defaults(func=cmd_generate)
    s = sub.add_parser("selfcheck", help="run every kernel once against its numpy twin; print pass/fail and timings")
    _add_device(s)
    s.set_defaults(func=cmd_selfcheck)
    s = sub.add_parser("bench", help="model speed against the bandwidth floor (--kernels: every kernel)")
    _add_device(s)
    s.add_argument("model", nargs="?", default=None,
                   help="converted directory, HF directory or GGUF file (default: SmolLM2-135M-Instruct)")
    s.add_argument("--prompt-tokens", type=int, default=128, help="prefill length (default 128)")
    s.add_argument("--decode-tokens", type=int, default=64, help="tokens decoded per timed run (default 64)")
    s.add_argument("--kernels", action="store_true", help="time each kernel, with GB/s and GFLOP/s next to numpy")
    s.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    s.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    s.set_defaults(func=cmd_bench)
    p.set_defaults(func=cmd_main)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except VkharpError as exc:
        print(f"vkharp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
