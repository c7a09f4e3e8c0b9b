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


def cmd_main(args) -> int:
    """No command: the main job. Until the model runtime lands: devices, then the kernel self-check."""
    rc = cmd_devices(args)
    print()
    return rc or cmd_selfcheck(args)


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
