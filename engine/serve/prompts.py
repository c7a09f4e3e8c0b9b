"""Requests to token ids: a chat through the model's template, a completion prompt as text or ids,
and the one check every prompt passes before it queues (it must leave room in the context)."""
from __future__ import annotations

from ..errors import VkharpError
from .errors import bad_request
from .protocol import ChatRequest, CompletionRequest, EmbeddingRequest


def chat_ids(req: ChatRequest, tokenizer) -> list[int]:
    """The conversation rendered by the chat template (a developer message counts as a system one)."""
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
    try:
        text = tokenizer.apply_chat_template(messages)
    except VkharpError as exc:
        raise bad_request(str(exc), param="messages") from None
    ids = tokenizer.encode(text, add_bos=False)      # the template writes its own BOS
    if not ids:
        raise bad_request("the chat template rendered nothing for these messages", param="messages")
    return ids


def conversation(req: ChatRequest) -> tuple[str | None, list[tuple[str, str]], str] | None:
    """(system, [(user, assistant), ...], the new user message) when the messages alternate as a chat
    does (what --memory's window evicts and recalls, engine/embed/memory.py); None for any other shape."""
    msgs = [("system" if m.role == "developer" else m.role, m.text()) for m in req.messages]
    system = msgs.pop(0)[1] if msgs and msgs[0][0] == "system" else None
    if not msgs or len(msgs) % 2 == 0 or msgs[-1][0] != "user":
        return None
    pairs = list(zip(msgs[:-1:2], msgs[1:-1:2]))
    if any(u[0] != "user" or a[0] != "assistant" for u, a in pairs):
        return None
    return system, [(u[1], a[1]) for u, a in pairs], msgs[-1][1]


def completion_ids(req: CompletionRequest, tokenizer, vocab_size: int) -> list[int]:
    """A prompt given as text, token ids, or a batch of one of them (batches of more are refused)."""
    p = req.prompt
    if isinstance(p, list) and p and isinstance(p[0], (str, list)):
        if len(p) != 1:
            raise bad_request(f"a batch of {len(p)} prompts: vkharp answers one prompt per request", param="prompt")
        p = p[0]
    if isinstance(p, str):
        ids = tokenizer.encode(p)
    else:
        ids = list(p)
        bad = [t for t in ids if not 0 <= t < vocab_size]
        if bad:
            raise bad_request(f"token id {bad[0]} is outside the vocabulary [0, {vocab_size})", param="prompt")
    if not ids:
        raise bad_request("the prompt is empty", param="prompt")
    return ids


def check_fits(ids: list[int], ctx: int, param: str) -> None:
    """A prompt must leave room for at least one new token (OpenAI's context_length_exceeded)."""
    if len(ids) >= ctx:
        raise bad_request(f"the prompt has {len(ids)} tokens and the context holds {ctx}: shorten it, or restart the "
                          f"server with a larger --ctx-size", param=param, code="context_length_exceeded")


def embedding_texts(req: EmbeddingRequest) -> list[str]:
    """The texts to embed: one string or a list of them. Token ids are refused: the vectors are taken
    over the pooling's own prompt (PromptEOL wraps the text), which needs the text."""
    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts:
        raise bad_request("input is empty: give a string or a list of strings", param="input")
    if not all(isinstance(t, str) for t in texts):
        raise bad_request("input as token ids is not supported: send the text (the pooling may wrap it in a "
                          "prompt)", param="input")
    return list(texts)
