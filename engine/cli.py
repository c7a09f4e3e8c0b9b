"""The `vkharp` command line: chat (the default), generate, serve, devices, convert, selfcheck, bench, eval,
embed, index, search (engine/embed/cli.py).

User errors print one clear line on stderr and exit with status 2, never a traceback: VkharpError
(no Vulkan, a bad device index, bad input, a damaged model, a chat template that fails or hits a
bound) and, described by errors.describe, OSError (permissions, a full disk, a missing file) and
text that is not UTF-8. VKHARP_DEBUG=1 adds the traceback. SIGTERM unwinds like Ctrl-C, so that a
conversion removes its temporary directory (exit status 143; Ctrl-C: 130).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

from . import text_input
from .errors import VkharpError, describe


def _add_device(p: argparse.ArgumentParser, top: bool = False):
    # Subcommands repeat the option; SUPPRESS keeps `vkharp --device 1 selfcheck` working.
    p.add_argument("--device", type=int, default=None if top else argparse.SUPPRESS, metavar="N",
                   help="Vulkan device index (default: $VKHARP_DEVICE or 0; see `vkharp devices`)")


def cmd_devices(args) -> int:
    from .device import REBUILD_HINT, apply_profile, kp_patches, list_devices
    from . import device as device_module
    kp = device_module._kp
    patches = kp_patches()
    if kp is None:
        print("kp: not installed; run ./vkharp once (it builds kp 0.9.0 with vkharp's patches)")
    else:
        missing = [n for n, ok in patches.items() if not ok]
        print(f"kp {getattr(kp, '__version__', '?')}: "
              + ("all vkharp patches present" if not missing else f"an unpatched build (missing: {'; '.join(missing)})"))
        for name, ok in patches.items():
            print(f"     {'yes' if ok else 'NO '}  {name}")
        if missing:
            print(f"     vkharp cannot order its programs with this kp: {REBUILD_HINT}")
    devices = list_devices()
    for d in devices:
        print(f"[{d.index}] {d.name}  ({d.type}, Vulkan {d.api_version})")
        print(f"     max storage buffer {d.max_storage_buffer_range / 2**20:.0f} MiB, "
              f"shared memory {d.max_shared_memory // 1024} KiB, work-group ≤ {d.max_workgroup_invocations} "
              f"invocations, subgroup {d.subgroup_size}, device-local memory {d.device_local_bytes / 2**30:.1f} GiB, "
              f"timestamps {'yes' if d.timestamps else 'no'}")
        prof = apply_profile(d)
        if prof is not d:
            print(f"     VKHARP_DEVICE_PROFILE={prof.extras['profile']}: used as a {prof.type} device")
    return 0


def cmd_selfcheck(args) -> int:
    from .device import Device
    from .selfcheck import run_selfcheck
    dev = Device(args.device)
    print(f"self-check on [{dev.index}] {dev.info.name}")
    ok = run_selfcheck(dev, out=sys.stdout)
    return 0 if ok else 1


def cmd_bench(args) -> int:
    if args.tune:
        from .tune.bench import run_tune_bench
        run_tune_bench(args.model, args.device, steps=2 if args.quick else args.tune_steps, json_path=args.json,
                       out=sys.stderr if args.json == "-" else sys.stdout)
        return 0
    if args.kernels:
        from .device import Device
        from .kernel_bench import run_kernel_bench
        run_kernel_bench(Device(args.device), out=sys.stdout, quick=args.quick, json_path=args.json)
        return 0
    from .bench import run_model_bench
    q = args.quick
    run_model_bench(args.model, args.device, prompt_sizes=[64] if q else args.prompt_tokens,
                    decode_tokens=32 if q else args.decode_tokens, repeats=2 if q else args.repeats,
                    modes=not args.no_modes, mode_tokens=16 if q else args.mode_tokens, paper_tokens=6 if q else 24,
                    contexts=[64, 256] if q else args.contexts, context_tokens=8 if q else 32,
                    json_path=args.json, out=sys.stderr if args.json == "-" else sys.stdout, llama_cpp=args.llama_cpp,
                    kv_type=args.kv_type)
    return 0


# Generation flags shared by chat and generate: llama.cpp's names where they exist, then ours.
# (option strings, GenerationSettings field, type, help); defaults come from GenerationSettings.
_FLAGS = [
    (("-n", "--max-tokens"), "max_tokens", int, "tokens to generate at most"),
    (("--temp",), "temperature", float, "temperature; 0 = greedy"),
    (("--top-k",), "top_k", int, "keep the k most likely tokens; 0 = off"),
    (("--top-p",), "top_p", float, "nucleus sampling mass; 1 = off"),
    (("--min-p", "--top-t"), "min_p", float, "topT: drop tokens below this fraction of the top probability; 0 = off"),
    (("--repeat-penalty",), "repeat_penalty", float, "repetition penalty; 1 = off"),
    (("--repeat-last-n",), "repeat_window", int, "tokens the repetition penalty looks back over"),
    (("--seed",), "seed", int, "seed of the host's random draws"),
    (("--dynatemp-range",), "dynatemp_range", float,
     "dynamic temperature: T varies in temp ± range with the entropy; > 0 turns it on"),
    (("--dynatemp-exp",), "dynatemp_exponent", float, "dynamic temperature exponent"),
    (("--edt-theta",), "edt_theta", float, "EDT's theta (with --edt)"),
    (("--harp",), "harp", str, "HARP reframing of hesitant steps: off, paper (recompute) or cached"),
    (("--harp-theta",), "harp_theta", float, "HARP reframes a step whose entropy is above this (bits)"),
    (("--harp-delta",), "harp_delta", float, "HARP's dropout probability on the reframed embeddings"),
    (("--harp-beta",), "harp_beta", float, "HARP's weight of the original logits in the mix"),
    (("--harp-seed",), "harp_seed", int, "seed of HARP's reframing masks (kept apart from --seed)"),
    (("--rollback-risk",), "rollback_risk", float, "rollback: a draw is risky when p < risk * p_max"),
    (("--rollback-window",), "rollback_window", int, "rollback: steps watched after a risky draw"),
    (("--rollback-entropy-rise",), "rollback_entropy_rise", float,
     "rollback: bits above the recent median entropy that count as a collapse"),
    (("--rollback-pmax-ratio",), "rollback_pmax_ratio", float,
     "rollback: p_max below ratio * its recent median counts as a collapse; 0 = off"),
]


def _context_size(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of tokens, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 token, got {n} (there is no 'model default' value)")
    return n


def _add_kv_type(p: argparse.ArgumentParser):
    from .ops.attention import KV_DTYPES
    p.add_argument("--kv-type", choices=KV_DTYPES, default=None,
                   help="KV cache entries (llama.cpp's --cache-type-k/-v); default f16 where the model's head "
                        "dim is a multiple of 8, else f32")


def _add_generation_flags(p: argparse.ArgumentParser):
    """The flags chat and generate share, defaults and help from GenerationSettings."""
    from .settings import HARP_MODES, GenerationSettings
    d = GenerationSettings()
    _add_device(p)
    p.add_argument("model", nargs="?", default=None,
                   help="converted directory, HF directory or GGUF file (default: SmolLM2-135M-Instruct)")
    p.add_argument("-c", "--ctx-size", type=_context_size, default=2048, metavar="N",
                   help="context size in tokens, at least 1 (default 2048)")
    _add_kv_type(p)
    for opts, name, kind, text in _FLAGS:
        extra = {"choices": HARP_MODES} if name == "harp" else {"metavar": "N" if kind is int else "X"}
        p.add_argument(*opts, dest=name, type=kind, default=getattr(d, name), help=f"{text} (default %(default)s)",
                       **extra)
    p.add_argument("--edt", action="store_true", help="entropy-based temperature (EDT) instead of a fixed one")
    p.add_argument("--rollback", action="store_true", help="undo a risky draw when the next steps collapse")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="stop when the text contains TEXT (repeatable; not included in the output)")


def settings_from_args(args):
    """GenerationSettings from the shared flags; a bad value raises VkharpError naming it (exit 2)."""
    from .settings import GenerationSettings
    if args.edt and args.dynatemp_range > 0:
        raise VkharpError("--edt and --dynatemp-range name two temperature rules; give one")
    rule = "edt" if args.edt else "dynatemp" if args.dynatemp_range > 0 else "fixed"
    stop = tuple(text_input.check(x, "--stop") for x in args.stop or ())
    return GenerationSettings(temp_rule=rule, rollback=args.rollback, stop=stop,
                              **{name: getattr(args, name) for _, name, _, _ in _FLAGS})


def _step_json(step) -> str:
    """One step as strict JSON (a non-finite number, which JSON cannot hold, becomes null)."""
    import dataclasses
    import json
    import math

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x
    return json.dumps(clean(dataclasses.asdict(step)), ensure_ascii=False, allow_nan=False)


def cmd_generate(args) -> int:
    """One-shot completion (or one chat turn with --chat): text (or --json steps) on stdout, statistics on stderr."""
    from .chat import AnswerStats
    from .model import load
    settings = settings_from_args(args)       # bad flags and bad text fail before the model loads
    if args.prompt is not None:
        prompt = text_input.check(args.prompt, "the -p prompt")
    else:
        prompt = text_input.read_all(sys.stdin, "the prompt on stdin")
    model = load(args.model, args.device, ctx=args.ctx_size, progress=sys.stderr.isatty(), kv_type=args.kv_type)
    if args.adapter:
        from .tune.lora import Adapter
        model.set_adapter(Adapter.load(model, args.adapter))
    if args.chat:
        prompt = model.tokenizer.apply_chat_template([{"role": "user", "content": prompt}])
        ids = model.tokenizer.encode(prompt, add_bos=False)
        if not ids:
            raise VkharpError(f"the chat template rendered nothing for this prompt; fix or replace the template in "
                              f"{model.tokenizer.template_source}")
    else:
        ids = model.tokenizer.encode(prompt)
    if len(ids) >= model.ctx:
        raise VkharpError(f"the prompt has {len(ids)} tokens but the context holds {model.ctx}; "
                          f"shorten it or raise --ctx-size")
    stats = AnswerStats(fed=len(ids))
    for step in model.generate(ids, settings):
        sys.stdout.write(_step_json(step) + "\n" if args.json else step.text)
        sys.stdout.flush()
        stats.add(step)
    if not args.json:
        print(file=sys.stdout, flush=True)
    print(f"[{stats.line()}]", file=sys.stderr)
    if stats.finish == "context":
        print(f"vkharp: the context of {model.ctx} tokens is full, so the answer stops there; "
              f"raise --ctx-size (-c) for a longer one", file=sys.stderr)
    return 0


def cmd_chat(args) -> int:
    from .chat import run
    return run(args, settings_from_args(args))


def cmd_serve(args) -> int:
    from .serve.server import run
    return run(args, settings_from_args(args))


def _port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535 (0: any free port), got {n}")
    return n


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def cmd_main(args) -> int:
    """No command: the main job, a chat with the default model (converted on first use)."""
    chat = build_parser().parse_args(["chat"])
    chat.device = args.device
    return cmd_chat(chat)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vkharp", description="Portable LLM inference on any Vulkan GPU.")
    _add_device(p, top=True)
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("devices", help="list Vulkan devices and the limits vkharp relies on")
    s.set_defaults(func=cmd_devices)
    from .convert import cli as convert_cli
    s = sub.add_parser("convert", help=convert_cli.HELP, description=convert_cli.HELP)
    convert_cli.add_arguments(s)
    s.set_defaults(func=convert_cli.run)
    s = sub.add_parser("chat", help="talk with a model in the terminal (the default when no command is given)")
    _add_generation_flags(s)
    s.add_argument("--system", default=None, metavar="TEXT", help="system prompt (default: the template's own)")
    s.add_argument("--show-uncertainty", action="store_true",
                   help="colour tokens by entropy, underline HARP-reframed ones, show rolled-back text struck")
    s.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colours: auto = a terminal without NO_COLOR (default auto)")
    s.add_argument("--memory", metavar="STORE", default=None,
                   help="exchanges that leave the context go into this vector store and come back when relevant")
    s.add_argument("--pooling", choices=("last", "mean", "prompteol"), default=None,
                   help="sentence vectors of --memory (default: the store's, else prompteol)")
    s.add_argument("--prompt-log", metavar="FILE", default=None,
                   help="append every rendered prompt to FILE as a JSON line (also $VKHARP_PROMPT_LOG)")
    s.add_argument("--adapter", metavar="PATH", default=None,
                   help="a LoRA adapter directory: loaded if it exists, and where /fix saves (default: "
                        "MODEL_DIR/adapters/chat, written on the first /fix)")
    s.add_argument("--fix-steps", type=_positive, default=60, metavar="N",
                   help="optimizer steps one /fix may take (default 60)")
    from .tune.cli import add_tune_flags
    add_tune_flags(s)
    s.set_defaults(func=cmd_chat)
    s = sub.add_parser("generate", help="complete a prompt (text on stdout, statistics on stderr)")
    _add_generation_flags(s)
    s.add_argument("-p", "--prompt", default=None, help="the prompt (default: read stdin)")
    s.add_argument("--chat", action="store_true", help="format the prompt as one user turn with the chat template")
    s.add_argument("--json", action="store_true",
                   help="one JSON object per step on stdout (token, text, prob, entropy, ..., rollbacks, finish)")
    s.add_argument("--adapter", metavar="PATH", default=None, help="apply this LoRA adapter (vkharp tune, /fix)")
    s.set_defaults(func=cmd_generate)
    s = sub.add_parser("serve", help="an OpenAI-compatible HTTP server (chat, completions, models, tokenize)")
    _add_generation_flags(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=_port, default=8080, help="port (default 8080; 0: any free one)")
    s.add_argument("--api-key", default=os.environ.get("VKHARP_API_KEY") or None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' (default: $VKHARP_API_KEY; none: no check)")
    s.add_argument("--queue", type=_positive, default=16, metavar="N",
                   help="requests that may wait for the model; more get 503 with Retry-After (default 16)")
    s.add_argument("--max-body", type=_positive, default=1 << 20, metavar="BYTES",
                   help="largest request body accepted (default 1048576)")
    s.add_argument("--alias", default=None, metavar="NAME", help="the model's id in /v1/models and answers")
    s.add_argument("--drain-seconds", type=float, default=60.0, metavar="S",
                   help="on SIGTERM, how long in-flight requests may take to finish (default 60)")
    s.add_argument("--memory", metavar="STORE", default=None,
                   help="chats that outgrow the context keep going: the oldest exchanges go into this vector store "
                        "and the most similar come back in front of each new message (one memory for every client)")
    s.add_argument("--prompt-log", metavar="FILE", default=None,
                   help="with --memory: append each fitted chat prompt as a JSON line (default: $VKHARP_PROMPT_LOG)")
    s.add_argument("--adapter", metavar="PATH", default=None, help="apply this LoRA adapter (vkharp tune, /fix)")
    s.set_defaults(func=cmd_serve)
    s = sub.add_parser("selfcheck", help="run every kernel once against its numpy twin; print pass/fail and timings")
    _add_device(s)
    s.set_defaults(func=cmd_selfcheck)
    s = sub.add_parser("bench", help="model speed against the bandwidth floor (--kernels: every kernel)")
    _add_device(s)
    s.add_argument("model", nargs="?", default=None,
                   help="converted directory, HF directory or GGUF file (default: SmolLM2-135M-Instruct)")
    s.add_argument("--prompt-tokens", type=int, nargs="+", default=[128, 512], metavar="N",
                   help="prefill lengths to time (default 128 512)")
    s.add_argument("--decode-tokens", type=int, default=128, help="tokens decoded per timed run (default 128)")
    s.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the median is shown (default 3)")
    s.add_argument("--mode-tokens", type=int, default=64,
                   help="tokens per decoding-mode run (HARP off/paper/cached, rollback off/on; default 64)")
    s.add_argument("--no-modes", action="store_true", help="skip the HARP and rollback runs")
    s.add_argument("--contexts", type=int, nargs="*", default=[128, 1024, 2000], metavar="N",
                   help="decode speed with the cache holding N positions (default 128 1024 2000; none: skip)")
    s.add_argument("--kernels", action="store_true", help="time each kernel, with GB/s and GFLOP/s next to numpy")
    _add_kv_type(s)
    s.add_argument("--tune", action="store_true",
                   help="time adapter training instead (/fix, vkharp tune): ms per optimizer step and training tokens/s")
    s.add_argument("--tune-steps", type=int, default=5, help="timed optimizer steps with --tune (default 5)")
    s.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run)")
    s.add_argument("--json", metavar="FILE", help="also write the figures as JSON ('-': to stdout, the table to stderr)")
    s.add_argument("--llama-cpp", metavar="PYTHON", default=None,
                   help="the python of a venv with llama-cpp-python: llama.cpp runs the same GGUF in this invocation "
                        "and the ratios are printed (default: $VKHARP_LLAMA_CPP_PYTHON)")
    s.set_defaults(func=cmd_bench)
    from . import evaluate
    s = sub.add_parser("eval", help="answer accuracy of decoding settings on GSM8K-style and BIG-bench tasks",
                       description=evaluate.HELP)
    _add_device(s)
    evaluate.add_arguments(s)
    s.set_defaults(func=evaluate.run)
    from .embed import cli as embed_cli
    embed_cli.add_parsers(sub, _add_device)
    from .tune import cli as tune_cli
    tune_cli.add_parsers(sub, _add_device)
    p.set_defaults(func=cmd_main)
    return p


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that `finally` and cleanups run (like Ctrl-C)."""


@contextlib.contextmanager
def _sigterm_unwinds():
    def handler(signum, frame):
        raise Terminated()
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:           # not the main thread (an embedding program): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    with _sigterm_unwinds():
        try:
            return args.func(args)
        except KeyboardInterrupt:
            return 130
        except Terminated:
            return 143
        except BrokenPipeError:      # `vkharp generate ... | head`: the reader left; nothing to say
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except Exception as exc:
            message = describe(exc)
            if message is None:      # a bug, not a user error: keep the traceback
                raise
            if os.environ.get("VKHARP_DEBUG") == "1":
                import traceback
                traceback.print_exc()
            print(f"vkharp: error: {message}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
