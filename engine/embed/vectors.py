"""Sentence vectors: the final hidden state after the last norm, pooled on the device, L2-normalised.

Poolings (the notes' survey of decoder-LLM embeddings, docs in README "Sentence vectors"):
  last       the last token's state of the text itself
  mean       the mean over all the text's tokens (summed across prefill chunks by shaders/pool_sum.comp)
  prompteol  PromptEOL (Jiang et al. 2023): the last token of `This sentence : "X" means in one word:"`
             — the prompt makes the model pack the meaning into its next-word prediction; no training

Each text runs as a fresh pass through the model's own *embedding* KV cache (engine/model.py EMBED,
allocated on first use, the size of the chat's): the chat's cache, its position and the tokens it
holds are untouched, so a chat or a server can embed between generations and keep its prefix reuse.
Only the [hidden] vector is downloaded, once per text; normalising it on the host is O(hidden).
"""
from __future__ import annotations

import numpy as np

from ..errors import VkharpError

POOLINGS = ("last", "mean", "prompteol")
DEFAULT_POOLING = "prompteol"   # best recall of the three on the default model (README "Sentence vectors")
PROMPTEOL = 'This sentence : "{}" means in one word:"'


def pooling_text(text: str, pooling: str) -> str:
    """The text the model reads for a pooling (PromptEOL wraps it in its prompt)."""
    return PROMPTEOL.format(text) if pooling == "prompteol" else text


def resolve_pooling(model, pooling: str | None) -> str:
    """The pooling asked for, else the model's configured one (model.pooling), else DEFAULT_POOLING."""
    p = pooling if pooling is not None else (getattr(model, "pooling", None) or DEFAULT_POOLING)
    if p not in POOLINGS:
        raise VkharpError(f"unknown pooling {p!r}: choose one of {', '.join(POOLINGS)}")
    return p


def _token_ids(model, texts, pooling: str) -> list[np.ndarray]:
    """Tokenise and check every text before anything runs (one bad text loses no other's work)."""
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise VkharpError(f"embed_texts takes a list of strings, got {type(texts).__name__}")
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise VkharpError(f"text {i} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise VkharpError(f"text {i} is empty: an empty text has no meaning to embed; drop it")
        ids = np.asarray(model.tokenizer.encode(pooling_text(text, pooling)), np.uint32)
        if ids.size > model.ctx:
            raise VkharpError(f"text {i} is {ids.size} tokens{' with the PromptEOL prompt' if pooling == 'prompteol' else ''}, "
                              f"more than the context of {model.ctx}: split it, or load the model with a larger ctx")
        if ids.max() >= model.cfg.vocab_size:
            raise VkharpError(f"text {i}: the tokenizer gave id {ids.max()} beyond the model's vocabulary "
                              f"({model.cfg.vocab_size}); the model directory is inconsistent, convert it again")
        out.append(ids)
    return out


def _pooled(model, ids: np.ndarray, pooling: str) -> np.ndarray:
    """One text through the embedding cache, chunk by chunk; the unnormalised pooled vector."""
    from ..model import EMBED
    model._cache(EMBED).reset()
    chunk = model.chunk
    acts = None
    for s in range(0, ids.size, chunk):
        part = ids[s:s + chunk]
        final = s + chunk >= ids.size
        if pooling == "mean":   # every chunk adds to the same program's accumulator: always the chunk program
            acts = model._run(part, "pool_mean", "pooled" if final else "none", chunk, cache=EMBED)
        elif final:
            acts = model._run(part, "pool_last", "pooled", 1 if part.size == 1 else chunk, cache=EMBED)
        else:
            model._run(part, "none", "none", chunk, cache=EMBED)
    return acts.pooled.host_view().reshape(-1).astype(np.float64)


def embed_texts(model, texts: list[str], pooling: str | None = None) -> np.ndarray:
    """float32 [len(texts), hidden], each row L2-normalised. Raises VkharpError (before any pass) for
    an unknown pooling, a text that is empty or longer than the context."""
    pooling = resolve_pooling(model, pooling)
    all_ids = _token_ids(model, texts, pooling)
    out = np.zeros((len(all_ids), model.cfg.hidden_size), np.float32)
    for i, ids in enumerate(all_ids):
        v = _pooled(model, ids, pooling)
        norm = np.linalg.norm(v)
        if not np.isfinite(norm) or norm == 0:
            raise VkharpError(f"text {i} gave a {'zero' if norm == 0 else 'non-finite'} vector: "
                              f"the model's weights or the device are broken (run `vkharp selfcheck`)")
        out[i] = v / norm
    return out
