"""`vkharp index`: text files → sentence chunks → vectors → the store, resumable.

Each file is split into sentences (paragraphs first, then sentence ends), and consecutive sentences
are joined into chunks of at most `max_tokens` tokens (a longer sentence is cut at word boundaries).
Every chunk is keyed by the file's resolved path, a hash of its content and its index, and stored in
small batches, each one transaction: Ctrl-C keeps every committed batch, and a rerun embeds only the
keys the store lacks. A file whose content changed has its old chunks replaced.
"""
from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import text_input
from ..errors import VkharpError

BATCH = 8                                     # chunks per transaction
_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?…。])[\"')\]]*\s+")


@dataclass(frozen=True)
class Chunk:
    key: str
    text: str
    meta: dict


def read_text_file(path: Path) -> str:
    """A file's text; a missing, binary or non-UTF-8 file gets a clear error."""
    if not path.exists():
        raise VkharpError(f"{path} does not exist")
    if path.is_dir():
        raise VkharpError(f"{path} is a directory: give the files in it (e.g. {path}/*.txt)")
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        raise VkharpError(f"{path} is a binary file (it holds NUL bytes); index text files only")
    return text_input.decode(data, str(path))


def paragraphs(text: str) -> list[list[str]]:
    """Sentences, grouped by paragraph (a blank line ends one)."""
    out = []
    for para in _PARAGRAPH.split(text):
        para = " ".join(para.split())
        sents = [s.strip() for s in _SENTENCE.split(para) if s.strip()]
        if sents:
            out.append(sents)
    return out


def _cut(sentence: str, count, max_tokens: int) -> list[str]:
    """A sentence longer than max_tokens, cut at word boundaries."""
    pieces, cur = [], []
    for w in sentence.split():
        if cur and count(" ".join(cur + [w])) > max_tokens:
            pieces.append(" ".join(cur))
            cur = []
        cur.append(w)
    return pieces + ([" ".join(cur)] if cur else [])


def split_chunks(text: str, count, max_tokens: int) -> list[str]:
    """Consecutive sentences of one paragraph joined while they fit max_tokens (count(text) -> tokens)."""
    chunks = []
    for sents in paragraphs(text):
        cur = ""
        for s in sents:
            for p in ([s] if count(s) <= max_tokens else _cut(s, count, max_tokens)):
                joined = f"{cur} {p}" if cur else p
                if cur and count(joined) > max_tokens:
                    chunks.append(cur)
                    joined = p
                cur = joined
        if cur:
            chunks.append(cur)
    return chunks


def file_chunks(path: Path, count, max_tokens: int) -> list[Chunk]:
    text = read_text_file(path)
    name = str(path.resolve())
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return [Chunk(f"{name}|{digest}|{i}", t, {"file": name, "sha": digest, "chunk": i})
            for i, t in enumerate(split_chunks(text, count, max_tokens))]


def index_files(model, store, files, *, pooling: str, max_tokens: int = 64, progress: bool = True,
                out=sys.stderr) -> dict:
    """Embed and store the chunks of `files` the store lacks; returns counts. Every file is read and
    checked before anything is embedded (a bad file costs nothing)."""
    from . import embed_texts
    count = lambda s: len(model.tokenizer.encode(s))   # noqa: E731
    per_file = [(Path(f), file_chunks(Path(f), count, max_tokens)) for f in files]
    replaced = 0
    for path, chunks in per_file:            # a changed file: its old chunks go
        replaced += store.delete_file_except(str(path.resolve()), chunks[0].meta["sha"] if chunks else "")
    todo_all = [c for _, chunks in per_file for c in chunks]
    have = store.stored_keys(c.key for c in todo_all)
    todo = [c for c in todo_all if c.key not in have]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc="embedding", unit="chunk", file=out)
    stored = 0
    try:
        for s in range(0, len(todo), BATCH):
            batch = todo[s:s + BATCH]
            vecs = embed_texts(model, [c.text for c in batch], pooling)
            store.add([c.text for c in batch], vecs, [c.meta for c in batch], [c.key for c in batch])
            stored += len(batch)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
        result = {"files": len(per_file), "chunks": len(todo_all), "already": len(have), "stored": stored,
                  "replaced": replaced, "missing": len(todo) - stored}
    return result
