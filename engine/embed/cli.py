"""`vkharp embed`, `vkharp index` and `vkharp search`: sentence vectors and the vector store from the
command line (engine/cli.py registers them). Vectors and hits go to stdout, progress to stderr."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .. import text_input
from ..errors import VkharpError
from .vectors import POOLINGS

MODEL_HELP = "converted directory, HF directory or GGUF file (default: SmolLM2-135M-Instruct)"


def _common(p: argparse.ArgumentParser, pooling_help: str):
    p.add_argument("-m", "--model", default=None, help=MODEL_HELP)
    p.add_argument("--pooling", choices=POOLINGS, default=None, help=pooling_help)
    p.add_argument("-c", "--ctx-size", type=int, default=2048, metavar="N",
                   help="context size in tokens: the longest text (default 2048)")


def add_parsers(sub, add_device) -> None:
    s = sub.add_parser("embed", help="sentence vectors of texts (JSON lines on stdout)")
    add_device(s)
    _common(s, "last | mean | prompteol (default: the model's, prompteol unless configured)")
    s.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed (default: one per line of stdin)")
    s.add_argument("--summary", action="store_true", help="print the width and the texts' cosine matrix instead")
    s.set_defaults(func=cmd_embed)
    s = sub.add_parser("index", help="split text files into chunks, embed them and add them to a vector store")
    add_device(s)
    s.add_argument("store", help="the store file (SQLite; created when missing)")
    s.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files")
    _common(s, "pooling of a new store (an existing store keeps its own; default prompteol)")
    s.add_argument("--max-tokens", type=int, default=64, metavar="N",
                   help="tokens per chunk at most: consecutive sentences are joined up to this (default 64)")
    s.set_defaults(func=cmd_index)
    s = sub.add_parser("search", help="the stored chunks most similar to a query")
    add_device(s)
    s.add_argument("store", help="a store built by `vkharp index`")
    s.add_argument("query", help="the query text")
    s.add_argument("-k", type=int, default=5, help="hits to show (default 5)")
    _common(s, "must be the store's (default: the store's)")
    s.add_argument("--json", action="store_true", help="one JSON object per hit")
    s.set_defaults(func=cmd_search)


def _load(args):
    from ..model import load
    return load(args.model, args.device, ctx=args.ctx_size, progress=sys.stderr.isatty())


def cmd_embed(args) -> int:
    texts = [text_input.check(t, f"text {i}") for i, t in enumerate(args.texts)]
    if not texts:
        texts = [line for line in text_input.read_all(sys.stdin, "stdin").splitlines() if line.strip()]
        if not texts:
            raise VkharpError("no text to embed: give TEXT arguments or lines on stdin")
    model = _load(args)
    vecs = model.embed(texts, args.pooling)
    if args.summary:
        from .vectors import resolve_pooling
        print(f"{len(texts)} vectors of width {vecs.shape[1]}, {resolve_pooling(model, args.pooling)} pooling, "
              f"L2-normalised; cosine similarities:")
        for i, row in enumerate(vecs @ vecs.T):
            print(f"  [{i}] " + " ".join(f"{c:6.3f}" for c in row) + f"   {texts[i][:50]}")
        return 0
    for text, v in zip(texts, vecs):
        print(json.dumps({"text": text, "vector": [round(float(x), 7) for x in v]}, ensure_ascii=False))
    return 0


def cmd_index(args) -> int:
    from pathlib import Path
    from .index import index_files, read_text_file
    from .store import Embedder, VectorStore
    if args.max_tokens < 4:
        raise VkharpError(f"--max-tokens must be at least 4, got {args.max_tokens}")
    for f in args.files:                       # bad files fail before the model loads
        read_text_file(Path(f))
    path = Path(args.store)
    existing = VectorStore.open(path) if path.exists() else None
    pooling = args.pooling or (existing.embedder.pooling if existing else None)
    if existing is not None:
        existing.close()
    model = _load(args)
    from .vectors import resolve_pooling
    pooling = resolve_pooling(model, pooling)
    store = VectorStore.open(path, Embedder.of(model, pooling), create=True)
    try:
        r = index_files(model, store, args.files, pooling=pooling, max_tokens=args.max_tokens,
                        progress=sys.stderr.isatty() or bool(os.environ.get("VKHARP_PROGRESS")))
    except KeyboardInterrupt:
        print(f"vkharp: interrupted; {path} keeps {len(store)} entries: run the same command again to add the rest",
              file=sys.stderr)
        raise
    finally:
        total = len(store)
        store.close()
    print(f"{r['stored']} chunks stored, {r['already']} already there"
          + (f", {r['replaced']} of changed files replaced" if r["replaced"] else "")
          + f" ({r['files']} files, {r['chunks']} chunks); {path} holds {total}", file=sys.stderr)
    return 0


def cmd_search(args) -> int:
    from .store import Embedder, VectorStore
    query = text_input.check(args.query, "the query")
    with VectorStore.open(args.store) as store:
        if len(store) == 0:
            raise VkharpError(f"{args.store} is empty: add files with `vkharp index {args.store} FILES...`")
        pooling = args.pooling or store.embedder.pooling
        model = _load(args)
        store.check(Embedder.of(model, pooling))      # before embedding: another model's store is refused
        hits = store.search(model.embed([query], pooling)[0], k=args.k)
    for rank, h in enumerate(hits, 1):
        if args.json:
            print(json.dumps({"rank": rank, "score": round(h.score, 6), "id": h.id, "text": h.text, "meta": h.meta},
                             ensure_ascii=False))
        else:
            where = f"{h.meta['file'].rsplit('/', 1)[-1]}#{h.meta['chunk']}" if "file" in h.meta else f"id {h.id}"
            print(f"{rank:2d}. {h.score:.4f}  {where}  {h.text}")
    return 0
