"""Generation: feed the prompt, then sample token after token on the GPU, with HARP and rollback.

    for step in model.generate("Once upon a time", temperature=0.7, harp="cached", rollback=True):
        print(step.text, end="")

Per token only the sampler's words go up (settings, the host's uniform draw, banned ids) and a few
words come back (token, probabilities, entropies); the logits stay on the device. The host draws
the uniform numbers from a generator seeded with `seed`, so the same seed, settings and device give
the same tokens.

HARP (Storaï & Hwang, arXiv 2412.07282): when the entropy of the model's next-token distribution is
above harp_theta bits, a second pass runs over reframed embeddings of the whole context (dropout
mask, no rescale) and the sampler draws from beta·original + (1 − beta)·reframed logits.
  paper   a fresh mask per hesitation, every position recomputed into a scratch cache (the
          reference algorithm; its cost grows with the context);
  cached  one fixed mask per position (from harp_seed, not the sampling seed), so the reframed KV cache
          stays valid and grows with the main one: every decode step runs both streams as one N = 2
          pass (each weight read once for both; engine/forward.py), and the sampler draws from the
          mixed logits only when the step hesitates. A prompt (or the tokens after a rollback)
          catches the reframed cache up chunk by chunk.
Rollback: engine/rollback.py. Tokens are yielded only once accepted; a Step carries the rollback
events resolved just before it.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .errors import NonFiniteLogits, VkharpError
from .forward import RING
from .rollback import RollbackRule, StepStats
from .sampling import NO_TOKEN, pack_sample_params, unpack_result
from .settings import GenerationSettings

@dataclass
class RollbackEvent:
    position: int          # cache position of the undone token
    tokens: list           # the undone tokens, the risky draw first
    text: str
    reason: str


@dataclass
class Step:
    token: int
    text: str
    prob: float            # in the final (filtered, renormalised) distribution it was drawn from
    entropy: float         # bits, of the model's own distribution (what HARP tests)
    temperature: float
    p_model: float = 0.0   # its probability in the distribution sampled (mixed when reframed), T = 1
    p_max: float = 0.0
    reframed: bool = False
    rollbacks: list = field(default_factory=list)   # RollbackEvents resolved just before this step
    ms: float = 0.0        # time of this step on the host clock (the first one includes the prompt)
    finish: str | None = None   # "stop" (EOS or a stop string), "length" (max_tokens), "context" (cache full)
    argmax: int = -1       # the most likely token there, in the distribution sampled (p_max is its)


@dataclass
class _Draw:
    index: int             # step index in this answer
    position: int          # cache position the token takes
    token: int
    result: object
    entropy: float
    reframed: bool
    ms: float


def generate(model, prompt: str | list[int], settings: GenerationSettings | None = None,
             **changes) -> Iterator[Step]:
    """Stream the continuation of `prompt` (text, or token ids) after what the cache holds."""
    s = settings or GenerationSettings()
    if changes:
        s = s.replace(**changes)
    ids = model.tokenizer.encode(prompt) if isinstance(prompt, str) else _token_ids(prompt)
    if not ids:
        if model.kv.pos == 0:
            raise VkharpError("nothing to continue: the prompt is empty and the cache holds nothing")
        last = model.kv.tokens[-1]           # re-run the last held token for its next-token logits
        model.truncate(model.kv.pos - 1)
        ids = [last]
    model._check_ids(ids)                    # a prompt longer than the context fails before anything runs
    return _Generation(model, s).run(ids)


def _token_ids(prompt) -> list[int]:
    """A prompt that is not text must be a sequence of integer token ids (bytes are neither)."""
    if isinstance(prompt, (bytes, bytearray, memoryview)):
        raise VkharpError("the prompt is bytes: pass text (e.g. prompt.decode('utf-8')) or a list of token ids")
    try:
        items = list(prompt)
    except TypeError:
        raise VkharpError(f"the prompt must be text or a list of token ids, got {type(prompt).__name__}") from None
    bad = [t for t in items if isinstance(t, bool) or not isinstance(t, (int, np.integer))]
    if bad:
        raise VkharpError(f"token ids must be integers, got {bad[0]!r} ({type(bad[0]).__name__}); pass text as a str")
    return [int(t) for t in items]


def _finite(r, position: int):
    """The sampler's result, unless the logits it read were not finite (the shader counts NaN and +inf
    logits; an all-NaN row also leaves no token): an error, never an end of text or a quiet draw."""
    if r.token == NO_TOKEN or r.nonfinite or not (np.isfinite(r.p_max) and np.isfinite(r.h_model)):
        raise NonFiniteLogits(f"the model computed non-finite logits (NaN or inf) for position {position}: its "
                              f"weights are damaged or overflow in this format; reconvert the model from its "
                              f"source (with --dtype f32 if it overflows)")
    return r


class _Generation:
    def __init__(self, model, s: GenerationSettings):
        self.model, self.s = model, s
        self.sampler = s.sampler()
        self.rng = np.random.default_rng(s.seed)
        self.rule = RollbackRule.from_settings(s) if s.rollback else None
        self.bans: dict[int, list[int]] = defaultdict(list)
        self.hesitations = 0
        self.cached_seed = (s.harp_seed * 0x9E3779B1 + 0x5EED) & 0xFFFFFFFF
        self.stream = model.tokenizer.streamer()
        self.text = ""                       # released text held back as a possible stop-string start

    def _words(self, context: list[int], position: int) -> tuple[np.ndarray, np.ndarray]:
        """The sampler's words for a draw at `position` after `context` (a fresh uniform, the ids
        banned there), and the ring of recent tokens for the repetition penalty."""
        recent = context[-RING:]
        ring = np.zeros(RING, np.uint32)
        ring[:len(recent)] = recent
        words = pack_sample_params(self.sampler, u=float(self.rng.random()), banned=self.bans[position],
                                   ring_count=len(recent), ring_head=len(recent) % RING, ring_capacity=RING)
        return words, ring

    def _ends(self, token: int) -> bool:
        return token in self.model.tokenizer.eos_ids or token == NO_TOKEN

    def _draw(self, feed: list[int], index: int) -> _Draw:
        m, s = self.model, self.s
        t0 = time.perf_counter()
        position = m.kv.pos + len(feed)
        words, ring = self._words(m.kv.tokens + feed, position)
        if s.harp == "cached":   # both streams every step; the mixed logits are used when hesitant
            r = unpack_result(m.feed_two_streams(feed, words, ring, seed=self.cached_seed, delta=s.harp_delta,
                                                 beta=s.harp_beta))
        else:
            r = unpack_result(m.feed_and_sample(feed, words, ring))
        r = _finite(r, position)
        entropy, reframed = r.h_model, False
        if s.harp != "off" and r.h_model > s.harp_theta:
            if s.harp == "paper":
                seed, self.hesitations = (s.harp_seed * 1_000_003 + self.hesitations) & 0xFFFFFFFF, self.hesitations + 1
                r = unpack_result(m.reframe(seed=seed, delta=s.harp_delta, beta=s.harp_beta, fresh=True,
                                            sampler_words=words, recent=ring))
            else:
                r = unpack_result(m.sample_mixed())
            r = _finite(r, position)
            reframed = True
        return _Draw(index, position, r.token, r, entropy, reframed, (time.perf_counter() - t0) * 1e3)

    def _redraw(self, first: _Draw) -> _Draw:
        """Draw again where a rollback undid `first`: from the logits saved on the device then, with
        the undone tokens banned (nothing is recomputed; the cache ends right before this position)."""
        t0 = time.perf_counter()
        words, ring = self._words(self.model.kv.tokens, first.position)
        r = _finite(unpack_result(self.model.sample_saved(words, ring)), first.position)
        return _Draw(first.index, first.position, r.token, r, first.entropy, first.reframed,
                     (time.perf_counter() - t0) * 1e3)

    def _step(self, d: _Draw, events: list, finish: str | None) -> Step:
        r = d.result
        piece = "" if self._ends(d.token) else self.stream.push(d.token)
        return Step(d.token, piece, r.p_final, d.entropy, r.temperature, r.p_model, r.p_max, d.reframed,
                    events, d.ms, finish, r.argmax)

    def run(self, ids: list[int]) -> Iterator[Step]:
        m, s = self.model, self.s
        feed, index, pending, events, redo = ids, 0, [], [], None
        if s.max_tokens == 0:
            return
        while True:
            if m.kv.pos + len(feed) > m.ctx:
                yield from self._release(pending, events, None)
                yield Step(-1, self._flush(), 0.0, 0.0, 0.0, finish="context")
                return
            d = self._draw(feed, index) if redo is None else self._redraw(redo)
            redo = None
            pending.append(d)
            eos = self._ends(d.token)
            last = eos or index + 1 >= s.max_tokens
            action = "release"
            if self.rule is not None:
                stats = StepStats(d.result.h_model, d.result.p_max, d.result.p_model)
                action, reason = self.rule.observe(index, stats, len(self.bans[d.position]))
                if action == "rollback":
                    j = self.rule.undone_from
                    undone = [p for p in pending if p.index >= j]
                    pending = [p for p in pending if p.index < j]
                    pos = undone[0].position
                    self.bans[pos].append(undone[0].token)
                    for p in [p for p in self.bans if p > pos]:
                        del self.bans[p]
                    toks = [u.token for u in undone]
                    events.append(RollbackEvent(pos, toks, m.tokenizer.decode(toks), reason))
                    m.truncate(pos)
                    feed, index, redo = [], j, undone[0]
                    continue
                if action == "hold" and self.rule.watch.step == index:
                    m.save_logits()       # a risky draw: keep its logits for a new draw there
            if last:
                self.rule = None
                for st in self._release(pending, events, "stop" if eos else "length"):
                    yield st
                    if st.finish:
                        return
                return
            if action == "release" or self.rule.watch is None:
                keep = []
            else:
                keep = [p for p in pending if p.index >= self.rule.watch.step]
            for st in self._release([p for p in pending if p not in keep], events, None):
                yield st
                if st.finish:
                    return
            pending = keep
            feed, index = [d.token], index + 1

    def _release(self, draws: list, events: list, finish: str | None) -> Iterator[Step]:
        """Turn accepted draws into Steps: text through the stream decoder and the stop strings."""
        for k, d in enumerate(draws):
            fin = finish if k == len(draws) - 1 else None
            st = self._step(d, list(events), fin)
            events.clear()
            self.text += st.text
            hit = min((i for i in (self.text.find(x) for x in self.s.stop) if i >= 0), default=-1)
            if hit >= 0:
                st.text, st.finish, self.text = self.text[:hit], "stop", ""
                yield st
                return
            if fin:
                st.text = self._flush()
            else:
                hold = max((n for x in self.s.stop for n in range(len(x) - 1, 0, -1)
                            if self.text.endswith(x[:n])), default=0)
                st.text, self.text = self.text[:len(self.text) - hold], self.text[len(self.text) - hold:]
            yield st

    def _flush(self) -> str:
        out, self.text = self.text, ""
        return out
