"""A conversation that outgrows its context: which exchanges stay in the KV cache, which leave, and
(with a memory store) which come back.

    window = ContextWindow(model, memory=Memory(model, "chat.db"))     # memory=None: a sliding window
    turn = window.fit(system, exchanges, text, reserve=64)
    turn.ids         # the prompt to feed (it fits, with `reserve` tokens left for the answer)
    turn.kept        # the exchanges still in the window (the oldest ones left, in order)
    turn.evicted     # those that left this turn (stored in the memory, when there is one)
    turn.recalled    # stored exchanges put back in front of the new message (Hits, best first)

The window keeps the system prompt and the newest exchanges; when the next turn would not fit, the
oldest exchanges leave. Without memory that is all (the cache is recomputed after the system
prompt: a chat never just stops). With memory, each evicted exchange is stored as text plus its
vector (engine/embed/store.py), a room of `recall_tokens` is kept free in the window, and each new
message retrieves the few stored exchanges most similar to it and puts them, best first and within
that room, in front of it in the user turn. Nothing here touches a terminal: the chat (engine/chat.py)
prints the status line, and a server can use the same class.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VkharpError

RECALL_HEADER = "(Earlier in this conversation:\n{}\n)\n\n"


@dataclass
class Turn:
    ids: list
    messages: list            # the conversation as rendered (system, kept exchanges, the new user turn)
    kept: list                # [(user, assistant)] still in the window
    evicted: list = field(default_factory=list)
    recalled: list = field(default_factory=list)

    def status(self, stored: bool) -> str:
        """One line on what left the context and what came back ('' when nothing did)."""
        parts = []
        if self.evicted:
            n = len(self.evicted)
            parts.append(f"{n} oldest exchange{'s' * (n != 1)} left the context, {'stored' if stored else 'dropped'} ("
                         + "; ".join(_short(u) for u, _ in self.evicted) + ")")
        if self.recalled:
            parts.append(f"recalled {len(self.recalled)} (" + "; ".join(
                f"{h.score:.2f} {_short(h.meta.get('user', h.text))}" for h in self.recalled) + ")")
        return ", ".join(parts)


def _short(text: str, n: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= n else text[:n - 1] + "…")


def exchange_text(user: str, assistant: str) -> str:
    return f"User: {user}\nAssistant: {assistant}"


class Memory:
    """Evicted exchanges in a vector store (created on first use), searched by the new message."""

    def __init__(self, model, path, *, pooling: str | None = None, k: int = 3, min_score: float = 0.0):
        from .store import Embedder, VectorStore
        from .vectors import resolve_pooling
        self.model, self.k, self.min_score = model, k, min_score
        store_pooling = None
        if Path(path).exists() and pooling is None:     # an existing memory keeps its own pooling
            with VectorStore.open(path) as st:
                store_pooling = st.embedder.pooling
        self.pooling = resolve_pooling(model, pooling or store_pooling)
        self.store = VectorStore.open(path, Embedder.of(model, self.pooling), create=True)
        self.session = f"{time.time():.6f}"
        self._stored: set[str] = set()   # exchanges stored by this process (a server's clients resend them)

    def _embeddable(self, text: str) -> str:
        """The text cut to what one embedding pass holds (the PromptEOL wrapper needs ~16 tokens)."""
        tok, room = self.model.tokenizer, self.model.ctx - 24
        ids = tok.encode(text)
        return text if len(ids) <= room else tok.decode(ids[:room])

    def remember(self, exchanges) -> list[int]:
        if not exchanges:
            return []
        from .vectors import embed_texts
        exchanges = [(u, a) for u, a in exchanges if exchange_text(u, a) not in self._stored]
        if not exchanges:
            return []
        texts = [exchange_text(u, a) for u, a in exchanges]
        self._stored.update(texts)
        vecs = embed_texts(self.model, [self._embeddable(t) for t in texts], self.pooling)
        metas = [{"kind": "exchange", "user": u, "assistant": a, "session": self.session} for u, a in exchanges]
        return self.store.add(texts, vecs, metas)

    def search(self, text: str):
        if len(self.store) == 0:
            return []
        from .vectors import embed_texts
        hits = self.store.search(embed_texts(self.model, [self._embeddable(text)], self.pooling)[0], k=self.k)
        return [h for h in hits if h.score >= self.min_score]

    def close(self):
        self.store.close()


class ContextWindow:
    def __init__(self, model, memory: Memory | None = None, recall_tokens: int | None = None):
        self.model, self.memory = model, memory
        self.recall_tokens = recall_tokens if recall_tokens is not None else model.ctx // 4
        self.recall_tokens = self.recall_tokens if memory is not None else 0

    def _render(self, system, exchanges, user_content):
        msgs = [{"role": "system", "content": system}] if system is not None else []
        for u, a in exchanges:
            msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        msgs.append({"role": "user", "content": user_content})
        tok = self.model.tokenizer
        return msgs, tok.encode(tok.apply_chat_template(msgs), add_bos=False)

    def fit(self, system, exchanges, text: str, reserve: int) -> Turn:
        """The prompt of the next turn, evicting the oldest exchanges until it fits (with `reserve`
        tokens for the answer and, with memory, `recall_tokens` for what is recalled)."""
        ctx = self.model.ctx
        kept = list(exchanges)
        limit = ctx - reserve - self.recall_tokens
        msgs, ids = self._render(system, kept, text)
        evicted = []
        while len(ids) > limit and kept:
            evicted.append(kept.pop(0))
            msgs, ids = self._render(system, kept, text)
        if len(ids) > ctx - reserve:
            raise VkharpError(f"this message needs {len(ids)} tokens with the system prompt, and the context of "
                              f"{ctx} must keep {reserve} for the answer: shorten it, lower --max-tokens (-n), "
                              f"or restart with a larger --ctx-size")
        turn = Turn(ids, msgs, kept, evicted)
        if self.memory is None:
            return turn
        self.memory.remember(evicted)
        recalled, lines = [], []
        for hit in self.memory.search(text):
            trial = lines + [hit.text]
            content = RECALL_HEADER.format("\n".join(trial)) + text
            m2, ids2 = self._render(system, kept, content)
            if len(ids2) - len(ids) > self.recall_tokens or len(ids2) > ctx - reserve:
                continue                         # this one does not fit the room; a shorter one may
            recalled.append(hit)
            lines, turn.messages, turn.ids = trial, m2, ids2
        turn.recalled = recalled
        return turn
