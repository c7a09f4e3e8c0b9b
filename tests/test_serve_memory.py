"""`vkharp serve --memory STORE`: a client that keeps resending a conversation longer than the context
is answered (the oldest exchanges leave it, into the store) and a later question gets the relevant
exchange back in front of it, checked in the server's prompt log; without --memory such a request is
refused with context_length_exceeded."""
import json

import httpx
import openai
import pytest

from served import Served
from test_chat_memory import FACT, FILLER, QUESTION


def converse(server):
    """The chat as a stateless client drives it: every request carries the whole history."""
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=600)
    history = []
    for text in [FACT, *FILLER, QUESTION]:
        history.append({"role": "user", "content": text})
        r = client.chat.completions.create(model="any", messages=history, max_tokens=8, temperature=0)
        history.append({"role": "assistant", "content": r.choices[0].message.content})
    return history


def test_memory_keeps_a_long_conversation_going_and_recalls_it(tmp_path):
    log, store = tmp_path / "prompts.jsonl", tmp_path / "memory.db"
    s = Served("-c", "256", "--memory", str(store), "--prompt-log", str(log))
    try:
        s.wait_ready()
        converse(s)
        out = s.output()
    finally:
        s.stop()
    entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(entries) == 6 and any(e["evicted"] for e in entries)
    last = entries[-1]["prompt"]
    assert last.count(FACT) == 1 and last.index(FACT) < last.index(QUESTION)   # recalled before the question
    assert entries[-1]["recalled"] >= 1 and "memory:" in out
    from engine.embed.store import VectorStore
    with VectorStore.open(store) as st:                 # each evicted exchange stored once, not per request
        users = [h.meta["user"] for h in st.get(range(1, len(st) + 1))]
    assert FACT in users and len(users) == len(set(users))

def test_without_memory_a_conversation_past_the_context_is_refused():
    s = Served("-c", "256")
    try:
        s.wait_ready()
        history = []
        for text in [FACT, *FILLER]:
            history += [{"role": "user", "content": text}, {"role": "assistant", "content": "Noted, thanks."}]
        history.append({"role": "user", "content": QUESTION})
        r = httpx.post(s.url + "/v1/chat/completions", json={"messages": history, "max_tokens": 4}, timeout=600)
    finally:
        s.stop()
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
