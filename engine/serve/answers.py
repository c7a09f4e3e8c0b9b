"""Steps (engine/generate.py) to OpenAI's objects: chat.completion(.chunk) and text_completion, whole
or as stream chunks, with logprobs and vkharp's per-token extension.

logprobs come from the GPU sampling stage's words: a token's logprob is ln of its probability in
the distribution it was drawn from at temperature 1 after the bans and the repetition penalty (the
mixed one when HARP reframed the step), exact. top_logprobs holds at most two tokens, both exact:
the most likely one (the stage returns its id and probability) and, when top_logprobs ≥ 2 and it
differs, the sampled one. The stage returns nothing about the other tokens (the logits stay on the
device), so a larger top_logprobs gets these two, not made-up ones.

The extension, asked for with "token_data": true, is a "token_data" list on each choice (each chunk's
choice when streaming: the tokens behind that chunk's text), one object per sampled token:
  {"id": 28, "text": " Paris", "logprob": -0.12, "p": 0.93, "entropy": 1.71, "temperature": 0.8,
   "reframed": false, "rollbacks": [{"position": 41, "tokens": [..], "text": "..", "reason": ".."}]}
p is its probability in the final (filtered, renormalised) distribution, entropy the model's
next-token entropy in bits (what HARP tests), reframed whether HARP mixed in the reframed pass, and
rollbacks the rollback events resolved just before this token (the undone text is never sent).
The end-of-sequence token is listed there (its entropy is data too) but not in logprobs.
"""
from __future__ import annotations

import math
import secrets
import time

FINISH = {"stop": "stop", "length": "length", "context": "length"}
FLOOR = -9999.0          # a logprob of −inf, as OpenAI writes it


def _logprob(p: float) -> float:
    return math.log(p) if p > 0 else FLOOR


class Answer:
    """One request's answer, fed Step by Step; `chat` picks the object kinds."""

    def __init__(self, *, chat: bool, model_id: str, tokenizer, prompt_tokens: int, logprobs: int | None,
                 token_data: bool):
        self.chat, self.model_id, self.tok = chat, model_id, tokenizer
        self.id = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
        self.created = int(time.time())
        self.prompt_tokens, self.cached = prompt_tokens, 0
        self.want_logprobs, self.want_data = logprobs, token_data      # logprobs: None = off, else top count
        self.text: list[str] = []
        self.logprobs: list[dict] = []
        self.data: list[dict] = []
        self.tokens = 0
        self.finish: str | None = None
        self._lp_from = self._data_from = 0        # entries not yet sent in a chunk

    # -- feeding -------------------------------------------------------------------------------
    def take(self, ev) -> bool:
        """Book a worker event (engine/serve/worker.py): the fitted prompt's size, the reused cache
        prefix, or a step (added). True for a step."""
        if ev.kind == "prompt":
            self.prompt_tokens = ev.payload
        elif ev.kind == "start":
            self.cached = ev.payload
        elif ev.kind == "step":
            self.add(ev.payload)
            return True
        return False

    def add(self, step) -> None:
        if step.token >= 0:
            self.tokens += 1
            end = step.token in self.tok.eos_ids
            if self.want_logprobs is not None and not end:
                self.logprobs.append(self._logprob_entry(step))
            if self.want_data:
                self.data.append({"id": step.token, "text": "" if end else self.tok.decode([step.token]),
                                  "logprob": _logprob(step.p_model), "p": step.prob, "entropy": step.entropy,
                                  "temperature": step.temperature, "reframed": step.reframed,
                                  "rollbacks": [{"position": e.position, "tokens": e.tokens, "text": e.text,
                                                 "reason": e.reason} for e in step.rollbacks]})
        self.text.append(step.text)
        if step.finish:
            self.finish = FINISH[step.finish]

    def _logprob_entry(self, step) -> dict:
        def entry(token: int, p: float) -> dict:
            piece = self.tok.decode([token])
            return {"token": piece, "logprob": _logprob(p), "bytes": list(piece.encode())}
        top = []
        if self.want_logprobs:
            top.append(entry(step.argmax, step.p_max) if step.argmax >= 0 else entry(step.token, step.p_model))
            if self.want_logprobs >= 2 and step.argmax >= 0 and step.argmax != step.token:
                top.append(entry(step.token, step.p_model))
        return {**entry(step.token, step.p_model), "top_logprobs": top}

    @property
    def finish_reason(self) -> str:
        return self.finish or "length"            # no step at all: max_tokens 0

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.tokens,
                "total_tokens": self.prompt_tokens + self.tokens,
                "prompt_tokens_details": {"cached_tokens": self.cached}}

    # -- streaming -----------------------------------------------------------------------------
    def _chunk(self, choice: dict) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created, "model": self.model_id, "choices": [choice]}

    def _choice(self, text: str | None, finish: str | None, *, role: bool = False) -> dict:
        lp, data = self._take()
        if self.chat:
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "logprobs": {"content": lp, "refusal": None} if lp else None,
                      "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": self._legacy(lp) if lp else None,
                      "finish_reason": finish}
        if self.want_data and not role:
            choice["token_data"] = data
        return choice

    def _take(self):
        lp, data = self.logprobs[self._lp_from:], self.data[self._data_from:]
        self._lp_from, self._data_from = len(self.logprobs), len(self.data)
        return lp, data

    def first_chunk(self) -> dict | None:
        """Chat streams open with the assistant role and empty content (as OpenAI's do)."""
        return self._chunk(self._choice(None, None, role=True)) if self.chat else None

    def chunk(self, step) -> dict | None:
        """The chunk for a step's text, or None while the text is held back (the entries wait)."""
        return self._chunk(self._choice(step.text, None)) if step.text else None

    def last_chunk(self) -> dict:
        return self._chunk(self._choice(None, self.finish_reason))

    def usage_chunk(self) -> dict:
        c = self._chunk({})
        c["choices"], c["usage"] = [], self.usage()
        return c

    # -- whole ---------------------------------------------------------------------------------
    def response(self) -> dict:
        text = "".join(self.text)
        lp = self.logprobs if self.want_logprobs is not None else None
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                      "logprobs": {"content": lp, "refusal": None} if lp is not None else None,
                      "finish_reason": self.finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": self._legacy(lp) if lp is not None else None,
                      "finish_reason": self.finish_reason}
        if self.want_data:
            choice["token_data"] = self.data
        return {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.model_id, "choices": [choice], "usage": self.usage()}

    def _legacy(self, entries: list[dict]) -> dict:
        """The completions API's logprobs layout (parallel lists)."""
        offsets, at = [], sum(len(t) for t in self.text) - sum(len(e["token"]) for e in entries)
        for e in entries:
            offsets.append(max(0, at))
            at += len(e["token"])
        return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
                "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries]
                if self.want_logprobs else None, "text_offset": offsets}
