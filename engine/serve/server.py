"""`vkharp serve`: bind the socket, start the worker (it loads the model while /health says 503),
and run uvicorn until SIGTERM or Ctrl-C.

Shutdown drains: uvicorn stops accepting connections and waits (up to --drain-seconds) for the open
ones, streams included, to finish; then the worker ends after the jobs still queued. The exit
status is the CLI's for a signal (143 for SIGTERM, 130 for Ctrl-C). A model that fails to load
stops the server with that error (exit status 2).
"""
from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

from ..errors import VkharpError


def model_id(args) -> str:
    if args.alias:
        return args.alias
    if args.model is None:
        return "SmolLM2-135M-Instruct"
    return Path(args.model).name


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, made here so that a port in use is an error line, not a uvicorn exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except socket.gaierror as exc:
        sock.close()
        raise VkharpError(f"--host {host!r} is not an address of this machine: {exc}") from None
    except OSError as exc:
        sock.close()
        raise VkharpError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
                          f"(or --host)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args, defaults) -> int:
    import uvicorn

    from ..model import load
    from .app import ServeOptions, build_app
    from .worker import Worker

    if args.model is not None and not Path(args.model).exists():
        raise VkharpError(f"{args.model} does not exist")
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    opts = ServeOptions(model_id=model_id(args), defaults=defaults, max_body=args.max_body, api_key=args.api_key,
                        drain_s=args.drain_seconds, memory=args.memory is not None)
    server: uvicorn.Server | None = None

    def stop_on_failure(exc):
        print("vkharp serve: the model failed to load; stopping", file=sys.stderr, flush=True)
        if server is not None:
            server.should_exit = True

    if getattr(args, "adapter", None) and not (Path(args.adapter) / "adapter_config.json").is_file():
        raise VkharpError(f"{args.adapter} is not an adapter directory (vkharp tune and the chat's /fix write them)")

    def load_model():
        model = load(args.model, args.device, ctx=args.ctx_size, kv_type=getattr(args, "kv_type", None))
        if getattr(args, "adapter", None):   # every request is answered by the adapted model
            from ..tune.lora import Adapter
            model.set_adapter(Adapter.load(model, args.adapter))
        return model

    worker = Worker(load_model, queue_size=args.queue,
                    on_fatal=stop_on_failure, memory=args.memory,
                    prompt_log=args.prompt_log or os.environ.get("VKHARP_PROMPT_LOG") or None)
    app = build_app(worker, opts)
    config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=args.drain_seconds,
                            lifespan="on", proxy_headers=False, server_header=False)
    server = uvicorn.Server(config)
    if not _loopback(args.host):
        print(f"vkharp serve: listening on {args.host}, not only this machine"
              + ("" if args.api_key else "; anyone who can reach it can use it (--api-key sets a key)"),
              file=sys.stderr)
    print(f"vkharp serve: {opts.model_id} at http://{args.host}:{port}/v1 (the model loads; /health answers "
          f"503 until it is ready)", file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if worker.error is not None:
        raise worker.error
    return 0
