"""Generation: prefill the prompt, then sample token after token on the GPU.

Per token only the sampler's words go up (settings, the host's uniform draw) and a few words come
back (token, probability, entropies); the logits stay on the device. The host draws the uniform
numbers from a seeded generator, so the same seed, settings and device give the same tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .forward import RING
from .sampling import SamplerSettings, pack_sample_params, unpack_result


@dataclass
class Step:
    token: int
    text: str
    prob: float          # in the final (filtered) distribution
    entropy: float       # bits, of the model's distribution
    temperature: float
    finish: str | None = None   # "stop" (EOS), "length" (max tokens), "context" (cache full)


def generate(model, prompt: str | list[int], settings: SamplerSettings | None = None, *, max_tokens: int = 64,
             seed: int = 0) -> Iterator[Step]:
    """Stream the continuation of `prompt` (text, or token ids) after what the cache holds."""
    settings = settings or SamplerSettings()
    ids = model.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
    rng = np.random.default_rng(seed)
    ring = np.zeros(RING, np.uint32)
    history = list(ids)
    stream = model.tokenizer.streamer()
    feed = ids
    for i in range(max_tokens):
        recent = history[-RING:]
        ring[:len(recent)] = recent
        words = pack_sample_params(settings, u=float(rng.random()), ring_count=len(recent),
                                   ring_head=len(recent) % RING, ring_capacity=RING)
        if model.kv.pos + len(feed) > model.ctx:
            yield Step(-1, "", 0.0, 0.0, 0.0, finish="context")
            return
        r = unpack_result(model.feed_and_sample(feed, words, ring))
        history.append(r.token)
        done = r.token in model.tokenizer.eos_ids
        text = "" if done else stream.push(r.token)
        finish = "stop" if done else ("length" if i == max_tokens - 1 else None)
        yield Step(r.token, text, r.p_final, r.h_model, r.temperature, finish)
        if done:
            return
        feed = [r.token]
