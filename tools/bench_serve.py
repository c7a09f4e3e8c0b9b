#!/usr/bin/env python3
"""`vkharp serve` under load: time to first token and tokens/s at 1, 4 and 8 concurrent clients.

Starts the server on a free loopback port (or uses --url), then for each concurrency C runs C client
threads, each sending --requests streaming chat requests (distinct questions, so only the template's
prefix is reused from the KV cache) through the official openai client. Reported per C:
  TTFT        median and 90th percentile, request sent -> first content chunk (queueing included:
              one model, one device, so the k-th waiting client waits for k answers)
  stream      median tokens/s of one stream after its first token
  aggregate   all completion tokens / the wall time of the run (what the server delivers in total)
Prints a markdown table. A benchmark, never a test: figures depend on the device and its load.

    $PY tools/bench_serve.py [--model M] [--tokens 32] [--requests 2] [--clients 1 4 8]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

QUESTIONS = ["Name a colour.", "Count to five.", "What is 2+2?", "Say hello.", "Name a fruit.", "What is water?",
             "Name a planet.", "Tell me a word.", "What is rain?", "Name an animal.", "What is a tree?",
             "Name a city.", "What is the sun?", "Name a river.", "What is snow?", "Name a tool."]


def one_request(client, question: str, tokens: int) -> tuple[float, float, int]:
    """(time to first token, decode tokens/s after it, completion tokens) of one streaming chat."""
    t0 = time.perf_counter()
    first, n, usage = None, 0, None
    stream = client.chat.completions.create(model="any", messages=[{"role": "user", "content": question}],
                                            max_tokens=tokens, temperature=0.8, seed=1, stream=True,
                                            stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            if first is None:
                first = time.perf_counter()
            n += 1
    end = time.perf_counter()
    count = usage if usage is not None else n
    rate = (count - 1) / (end - first) if first is not None and count > 1 and end > first else 0.0
    return (first or end) - t0, rate, count


def run(client, clients: int, requests: int, tokens: int) -> dict:
    results, lock = [], threading.Lock()

    def worker(k):
        for r in range(requests):
            res = one_request(client, QUESTIONS[(k * requests + r) % len(QUESTIONS)], tokens)
            with lock:
                results.append(res)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttft = sorted(r[0] for r in results)
    return {"clients": clients, "requests": len(results), "ttft_med": statistics.median(ttft),
            "ttft_p90": ttft[min(len(ttft) - 1, int(0.9 * len(ttft)))],
            "stream": statistics.median(r[1] for r in results), "aggregate": sum(r[2] for r in results) / wall,
            "wall": wall}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running server's base URL (default: start one)")
    p.add_argument("--model", help="model for the started server (default: the default model)")
    p.add_argument("--ctx", type=int, default=1024)
    p.add_argument("--tokens", type=int, default=32, help="max_tokens per request (default 32)")
    p.add_argument("--requests", type=int, default=2, help="requests per client (default 2)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    args = p.parse_args()
    import openai
    served = None
    url = args.url
    if url is None:
        from served import Served
        served = Served("-c", str(args.ctx), "--queue", str(max(args.clients) + 1),
                        *([args.model] if args.model else []))
        served.wait_ready()
        url = served.url
    try:
        client = openai.OpenAI(base_url=url.rstrip("/") + "/v1", api_key="none", max_retries=0, timeout=3600)
        one_request(client, "Warm up.", 4)                      # pipelines compiled before timing
        rows = [run(client, c, args.requests, args.tokens) for c in args.clients]
    finally:
        if served is not None:
            served.stop()
    print(f"max_tokens {args.tokens}, {args.requests} requests per client, streaming chat, temperature 0.8")
    print("| clients | requests | TTFT median | TTFT p90 | tokens/s per stream | tokens/s aggregate |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['ttft_med']:.2f} s | {r['ttft_p90']:.2f} s | "
              f"{r['stream']:.1f} | {r['aggregate']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
