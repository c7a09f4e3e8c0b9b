"""HARP's passes on the device (the policy, when to reframe, is in engine/generate.py).

Mixed into engine.model.Model: `reframe` (the paper's second pass over the whole context, or a lazy
catch-up of the reframed cache) and `feed_two_streams` / `sample_mixed` (the cached mode's N = 2
step: plain and reframed token in one pass, each weight read once for both).
"""
from __future__ import annotations

import numpy as np

from . import ops
from .errors import VkharpError
from .forward import make_acts, record_forward
from .params import write_step

MAIN, REFRAMED = "main", "reframed"   # the model's KV cache / logits, and HARP's reframed ones


class HarpPasses:
    def _reframed_for(self, seed: int, delta: float, keep_at_most: int):
        """The reframed cache, holding only positions still valid for the main cache's tokens under
        this (seed, delta) mask (at most keep_at_most of them)."""
        kv = self._cache(REFRAMED)
        if self._reframed_key != (seed, float(delta)):
            kv.reset()
        self._reframed_key = (seed, float(delta))
        kv.truncate(min(kv.common_prefix(self.kv.tokens), keep_at_most))
        return kv

    def reframe(self, *, seed: int, delta: float, beta: float, fresh: bool, sampler_words=None, recent=None):
        """HARP's second pass over the whole context the main cache holds, on reframed embeddings
        (element (t, d) dropped where rng.uniform(seed, t, d) < delta, no rescale), into the reframed
        cache; then logits = beta·main + (1 − beta)·reframed, where "main" is the last logits the main
        cache produced (the caller has just run that step).

        fresh=True recomputes every position (the paper: a new mask per hesitation, seed changes);
        fresh=False keeps the positions the reframed cache already holds for the same tokens, seed
        and delta, and catches up only the rest, chunk by chunk (HARP cached mode). Returns the
        sampling stage's words when sampler_words are given, else the mixed logits.
        """
        ctx_ids = self.kv.tokens
        if not ctx_ids:
            raise VkharpError("reframe() needs a context: feed tokens first")
        # at least one token runs, for its logits; fresh: none kept
        kv = self._reframed_for(seed, delta, 0 if fresh else len(ctx_ids) - 1)
        todo = np.asarray(ctx_ids[kv.pos:], dtype=np.uint32)
        readback = "harp_sample" if sampler_words is not None else "harp_logits"
        self._sampled_from = REFRAMED if sampler_words is not None else self._sampled_from
        acts = self._feed(todo, readback, sampler_words, recent, cache=REFRAMED, beta=float(beta),
                          dropout=(int(seed), float(delta)))
        if sampler_words is not None:
            return acts.sample_out.host_view().copy()
        return acts.logits.host_view().reshape(-1).copy()

    def feed_two_streams(self, token_ids, sampler_words: np.ndarray, recent: np.ndarray | None = None, *,
                         seed: int, delta: float, beta: float) -> np.ndarray:
        """HARP cached mode: feed tokens into the main cache and, with a fixed mask per position
        (seed, delta), into the reframed cache; the last token runs as one N = 2 pass (both streams,
        each weight read once), leaving the plain logits in the main buffer and
        beta·plain + (1 − beta)·reframed in the reframed one. Samples both with the same words; returns
        the plain draw's words, and `sample_mixed` the mixed one's."""
        ids = self._check_ids(token_ids)
        if ids.size == 0:
            raise VkharpError("feed_two_streams needs at least one token")
        if ids.size > 1:
            self._feed(ids[:-1], "none")
        kv2 = self._reframed_for(seed, delta, self.kv.pos)
        if kv2.pos < self.kv.pos:   # catch up (the prompt, or after a rollback), chunk by chunk
            self._feed(np.asarray(self.kv.tokens[kv2.pos:], np.uint32), "none", cache=REFRAMED,
                       dropout=(int(seed), float(delta)))
        key = ("two streams", float(beta))
        if key not in self._programs:
            acts = self._acts.get("two streams") or make_acts(self, 2, "all")
            self._acts["two streams"] = acts
            rec = self.device.recorder(name="forward[N=2,two streams]")
            record_forward(self, rec, acts, head="all", dropout=True, kv=self.kv, second_kv=kv2)
            ops.split_mix(rec, self._logits_buffer(MAIN), self._logits_buffer(REFRAMED), acts.logits, beta=beta)
            self._record_sample(rec, MAIN)
            # the mixed logits are sampled too, with the same words (a dispatch costs less than a
            # second submission; the host keeps this draw when the step hesitates)
            acts.extra["mixed_out"] = acts.extra.get("mixed_out") or self.device.buffer(self._sampler_io()[2].shape, np.uint32, "act",
                                                         name="sample_out[mixed]")
            self._record_sample(rec, REFRAMED, acts.extra["mixed_out"])
            self._programs[key] = (rec.finish(), acts)
        prog, acts = self._programs[key]
        tok = int(ids[-1])
        write_step(acts.step, pos=self.kv.pos, n_tokens=2, seed=int(seed), drop_on=1, drop_p=float(delta))
        acts.ids.host_view()[:2] = tok
        words = self._run_sampler_io(prog, sampler_words, recent)
        self._mixed_words = acts.extra["mixed_out"].host_view().copy()
        self.kv.append([tok])
        kv2.append([tok])
        self._sampled_from = MAIN
        return words

    def sample_mixed(self) -> np.ndarray:
        """The draw from the mixed logits of the last two-stream step (made with the same words, in
        the same program): what HARP uses when the step hesitated."""
        if self._mixed_words is None:
            raise VkharpError("sample_mixed() follows feed_two_streams()")
        words, self._mixed_words = self._mixed_words, None
        self._sampled_from = REFRAMED
        return words
