"""Rollback's decision rule, apart from the engine so that it can be tested on scripted numbers.

The idea (seed 000, idea 9): when the sampler draws a bad token, the model's confidence in the
tokens that follow drops. The rule:

  1. A draw is *risky* when its probability under the model is well below the top one:
     p(token) < risk · p_max. Greedy draws never are.
  2. After a risky draw at step j the next `window` distributions (steps j+1 … j+window) are
     watched against the *baseline*: the medians of entropy and p_max over the last `baseline`
     steps up to and including j.
  3. A watched step *collapses* when its entropy ≥ baseline entropy + entropy_rise (bits), or its
     p_max ≤ pmax_ratio · baseline p_max.
  4. On a collapse the engine undoes token j and everything after it (a KV-cache truncate), forbids
     token j at that position, and samples there again. At most `retries` rollbacks per position
     and `max_total` per answer; past either, risky draws are no longer watched, so it never loops.

While a draw is watched, its token and the ones after it are held back from the caller: what the
caller receives is never undone. One draw is watched at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .settings import GenerationSettings

_D = GenerationSettings()   # the defaults live there, once


@dataclass(frozen=True)
class StepStats:
    entropy: float      # bits, of the model's distribution
    p_max: float
    p_token: float      # the drawn token's probability under the model


@dataclass
class Watch:
    step: int                 # index of the risky draw
    base_entropy: float
    base_pmax: float


@dataclass
class RollbackRule:
    risk: float = _D.rollback_risk
    window: int = _D.rollback_window
    entropy_rise: float = _D.rollback_entropy_rise
    pmax_ratio: float = _D.rollback_pmax_ratio
    baseline: int = _D.rollback_baseline
    retries: int = _D.rollback_retries
    max_total: int = _D.rollback_max
    history: list = field(default_factory=list)     # StepStats of accepted steps, in order
    watch: Watch | None = None
    total: int = 0
    undone_from: int = -1      # the watched step the last rollback undoes from

    @classmethod
    def from_settings(cls, s) -> "RollbackRule":
        return cls(risk=s.rollback_risk, window=s.rollback_window, entropy_rise=s.rollback_entropy_rise,
                   pmax_ratio=s.rollback_pmax_ratio, baseline=s.rollback_baseline, retries=s.rollback_retries,
                   max_total=s.rollback_max)

    def risky(self, st: StepStats) -> bool:
        return st.p_token < self.risk * st.p_max

    def collapsed(self, st: StepStats, w: Watch) -> str | None:
        """The reason a watched step counts as a collapse, or None."""
        if st.entropy >= w.base_entropy + self.entropy_rise:
            return f"entropy {st.entropy:.2f} bits ≥ {w.base_entropy:.2f} + {self.entropy_rise:g}"
        if self.pmax_ratio > 0 and st.p_max <= self.pmax_ratio * w.base_pmax:
            return f"p_max {st.p_max:.3f} ≤ {self.pmax_ratio:g} × {w.base_pmax:.3f}"
        return None

    def observe(self, step: int, st: StepStats, retries_here: int) -> tuple[str, str | None]:
        """Take step `step`'s stats; returns (action, reason), action one of:
        "rollback" (undo from the watched draw on), "hold" (a draw is being watched: keep the tokens
        back), "release" (nothing watched: every held token is accepted)."""
        w = self.watch
        if w is not None and step > w.step:
            reason = self.collapsed(st, w)
            if reason is not None:
                self.watch, self.undone_from = None, w.step
                self.total += 1
                del self.history[w.step:]
                return "rollback", reason
            if step - w.step < self.window:
                self.history.append(st)
                return "hold", None
            self.watch = None
        self.history.append(st)
        if self.risky(st) and retries_here < self.retries and self.total < self.max_total:
            recent = self.history[-self.baseline:]
            self.watch = Watch(step, float(np.median([s.entropy for s in recent])),
                               float(np.median([s.p_max for s in recent])))
            return "hold", None
        return "release", None
