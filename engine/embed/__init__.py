"""Sentence vectors from our own models, and what is built on them.

    from engine.embed import embed_texts
    vecs = embed_texts(model, ["a sentence", "another"], pooling="prompteol")   # float32 [2, hidden]

vectors.py  the device pass (final normed hidden state, pooled on the device) and the poolings
store.py    the on-disk vector store (text + metadata + vector in one SQLite file)
memory.py   a chat's long-term memory: evicted exchanges stored and recalled (engine/chat.py uses it)
"""
from .vectors import DEFAULT_POOLING, POOLINGS, PROMPTEOL, embed_texts, pooling_text

__all__ = ["DEFAULT_POOLING", "POOLINGS", "PROMPTEOL", "embed_texts", "pooling_text"]
