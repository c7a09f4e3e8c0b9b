"""Every generation setting in one validated dataclass: sampling, HARP, rollback, stopping.

    s = GenerationSettings(temperature=0.7, min_p=0.1, harp="cached")
    s = s.replace(top_k=0)          # a new, validated copy
    s = s.set("harp_theta", "1.5")  # from text (the chat's /set, the CLI), errors name the value

Defaults are llama.cpp's for sampling (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no
repetition penalty) and the HARP paper's for reframing (theta 1 bit, delta 0.2, beta 0.5); HARP and
rollback are off unless asked for. Entropies are in bits everywhere.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import InitVar, dataclass, fields

from .errors import VkharpError
from .sampling import SamplerSettings

HARP_MODES = ("off", "paper", "cached")
SAMPLER_FIELDS = ("temperature", "temp_rule", "dynatemp_range", "dynatemp_exponent", "edt_theta", "edt_n",
                  "top_k", "top_p", "min_p", "repeat_penalty", "repeat_window")


@dataclass(frozen=True)
class GenerationSettings:
    # -- sampling (engine/sampling.py documents the stage order) --
    temperature: float = 0.8
    temp_rule: str = "fixed"            # fixed | dynatemp | edt  (per-token temperature)
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    edt_theta: float = 1.0
    edt_n: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05                 # topT: keep p >= min_p * p_max
    repeat_penalty: float = 1.0
    repeat_window: int = 64
    # -- HARP (engine/generate.py) --
    harp: str = "off"                   # off | paper (recompute the context per hesitation) | cached
    harp_theta: float = 1.0             # bits: reframe when the entropy is above this
    harp_delta: float = 0.2             # dropout probability of the reframed embeddings
    harp_beta: float = 0.5              # weight of the original logits in the mix
    harp_seed: int = 0                  # seeds the reframing masks (apart from `seed`, so that the
                                        # cached mode's reframed cache outlives answers and turns)
    # -- rollback (engine/rollback.py documents the rule) --
    rollback: bool = False
    rollback_risk: float = 0.1          # a draw is risky when p(token) < risk * p_max
    rollback_window: int = 2            # following steps watched after a risky draw
    rollback_entropy_rise: float = 1.5  # bits above the recent median entropy that count as a collapse
    rollback_pmax_ratio: float = 0.5    # p_max below ratio * its recent median counts as a collapse
    rollback_baseline: int = 8          # steps in the recent median
    rollback_retries: int = 2           # rollbacks at one position at most
    rollback_max: int = 8               # rollbacks per answer at most
    # -- stopping and reproducibility --
    max_tokens: int = 256
    stop: tuple = ()                    # stop strings (finish reason "stop", not included in the text)
    seed: int = 0
    top_t: InitVar[float | None] = None   # alias of min_p

    def __post_init__(self, top_t):
        if top_t is not None:
            if self.min_p not in (0.0, 0.05, top_t):
                raise VkharpError(f"min_p={self.min_p} and top_t={top_t} name the same setting; give one")
            object.__setattr__(self, "min_p", top_t)
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(self.stop))
        self.sampler()   # validates the sampling fields, naming the value
        if self.harp not in HARP_MODES:
            raise VkharpError(f"harp must be one of {', '.join(HARP_MODES)}, got {self.harp!r}")
        _number(self, "harp_theta", lambda v: v >= 0, "≥ 0 (bits)")
        _number(self, "harp_delta", lambda v: 0 <= v < 1, "in [0, 1)")
        _number(self, "harp_beta", lambda v: 0 <= v <= 1, "in [0, 1]")
        if not isinstance(self.rollback, bool):
            raise VkharpError(f"rollback must be true or false, got {self.rollback!r}")
        _number(self, "rollback_risk", lambda v: 0 <= v <= 1, "in [0, 1]")
        _number(self, "rollback_entropy_rise", lambda v: v > 0, "> 0 (bits)")
        _number(self, "rollback_pmax_ratio", lambda v: 0 <= v <= 1, "in [0, 1] (0 = off)")
        for name, lo in (("rollback_window", 1), ("rollback_baseline", 1), ("rollback_retries", 0),
                         ("rollback_max", 0), ("max_tokens", 0), ("seed", 0), ("harp_seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo or v >= 2**63:
                raise VkharpError(f"{name} must be an integer ≥ {lo}, got {v!r}")
        if self.rollback_retries > 8:
            raise VkharpError(f"rollback_retries must be at most 8 (banned ids per step), got {self.rollback_retries}")
        if not all(isinstance(x, str) and x for x in self.stop):
            raise VkharpError(f"stop must be non-empty strings, got {self.stop!r}")

    def sampler(self) -> SamplerSettings:
        return SamplerSettings(**{k: getattr(self, k) for k in SAMPLER_FIELDS})

    def replace(self, **changes) -> "GenerationSettings":
        unknown = set(changes) - set(names()) - {"top_t"}
        if unknown:
            raise VkharpError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(names())}")
        return dataclasses.replace(self, **changes)

    def set(self, name: str, text: str) -> "GenerationSettings":
        """A copy with one setting parsed from text (names with '-' or '_'; top_t aliases min_p)."""
        key = name.replace("-", "_")
        if key == "top_t":
            key = "min_p"
        if key not in names():
            raise VkharpError(f"unknown setting {name!r}; known: {', '.join(names())}")
        kind = type(getattr(self, key))
        try:
            if kind is bool:
                low = text.strip().lower()
                if low not in ("1", "0", "true", "false", "on", "off", "yes", "no"):
                    raise ValueError
                value = low in ("1", "true", "on", "yes")
            elif kind is tuple:
                value = tuple(p for p in text.split("|") if p) if text else ()
            elif kind is int:
                value = int(text)
            elif kind is float:
                value = float(text)
            else:
                value = text.strip()
        except ValueError:
            raise VkharpError(f"{key} takes a {kind.__name__}, got {text!r}") from None
        return self.replace(**{key: value})

    def describe(self) -> list[tuple[str, str]]:
        return [(n, repr(getattr(self, n))) for n in names()]


def names() -> list[str]:
    return [f.name for f in fields(GenerationSettings)]


def _number(s, name, ok, want):
    v = getattr(s, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
        raise VkharpError(f"{name} must be {want}, got {v!r}")

