"""Sampler settings, and the per-step words the sampling shader reads.

Stage order (written once here; shaders/sample.comp and engine/reference/sample.py follow it):

  1. bans: up to 8 token ids from the step params get logit −inf (rollback uses them to forbid a
     token); a logit that is already −inf counts as banned too.
  2. repetition penalty (llama.cpp rule) over the last `repeat_window` tokens of the ring of recent
     tokens: logit > 0 → logit / penalty, else logit × penalty; each distinct token once.
  3. model statistics of softmax(logits after 1–2, temperature 1): entropy H_model (reported in
     bits), p_max, and the argmax (lowest index wins ties).
  4. temperature T:
       fixed     T = temperature;
       dynatemp  (llama.cpp) H = H_model in nats over the non-banned tokens, H_max = ln(their number),
                 T = T_min + (T_max − T_min)·(H / H_max)^exponent, T_min = max(0, T − range),
                 T_max = T + range (range 0 → fixed);
       edt       (Zhang et al., arXiv 2403.14541) T = T0 · N^(theta / H), H = H_model in NATS
                 (the paper writes "Entropy" without a base; its usual implementations use the
                 natural log), N = 0.8; H = 0 gives T = 0.
     T < GREEDY_T (1e-6) → greedy: the argmax of step 3 is the token and stages 5–7 are skipped.
  5. softmax(logits / T), kept as unnormalised weights w = exp((logit − max) / T) ∈ (0, 1]
     (the max token has w = 1 exactly).
  6. filters, HF order, each "keep w ≥ threshold" so ties at a threshold are all kept:
       top-k (0 = off): threshold = the k-th largest w;
       top-p (1.0 = off): over the top-k survivors (renormalised), the smallest nucleus whose
                          mass reaches top_p: threshold = the largest w whose upper mass ≥ top_p;
       min-p / topT (0 = off): drop p < min_p · p_max, i.e. w < min_p (after temperature).
  7. draw with the host's uniform u ∈ [0, 1): the first kept token (index order) whose cumulative
     kept mass reaches u · (total kept mass).

Outputs (OUT_WORDS u32 words, floats as bits): token, its probability in the final (kept,
renormalised) distribution, its probability under the step-3 model distribution, H_model (bits),
H_final (bits, of the kept renormalised distribution), p_max (model), the temperature used, the
number of kept tokens, and the path the shader took (diagnostics).
"""
from __future__ import annotations

import math
from dataclasses import InitVar, dataclass

import numpy as np

from .errors import VkharpError

TEMP_RULES = {"fixed": 0, "dynatemp": 1, "edt": 2}
MAX_BANNED = 8
GREEDY_T = 1e-6      # a temperature below this samples greedily

# Per-step sampler params, u32 words (mirrored as SP_* #defines at the top of shaders/sample.comp).
# | word  | name          | type | meaning                                                   |
# |-------|---------------|------|-----------------------------------------------------------|
# | 0     | temp          | f32  | temperature (T0 for edt, the centre for dynatemp)         |
# | 1     | rule          | u32  | 0 fixed, 1 dynatemp, 2 edt                                |
# | 2     | dyn_range     | f32  | dynatemp range                                            |
# | 3     | dyn_exp       | f32  | dynatemp exponent                                         |
# | 4     | edt_theta     | f32  | EDT theta                                                 |
# | 5     | edt_n         | f32  | EDT N                                                     |
# | 6     | top_k         | u32  | 0 = off                                                   |
# | 7     | top_p         | f32  | 1.0 = off                                                 |
# | 8     | min_p         | f32  | 0 = off (topT)                                            |
# | 9     | penalty       | f32  | repetition penalty, 1.0 = off                             |
# | 10    | window        | u32  | repetition window (last tokens of the ring)               |
# | 11    | u             | f32  | uniform draw in [0, 1)                                    |
# | 12    | ring_count    | u32  | valid tokens in the ring (≤ its capacity RW)              |
# | 13    | ring_head     | u32  | ring slot the next token goes to; the last is head − 1    |
# | 14    | n_banned      | u32  | number of banned ids that follow (≤ 8)                    |
# | 15    | (reserved)    |      |                                                           |
# | 16–23 | banned[8]     | u32  | banned token ids                                          |
SAMPLE_PARAMS = {"temp": 0, "rule": 1, "dyn_range": 2, "dyn_exp": 3, "edt_theta": 4, "edt_n": 5,
                 "top_k": 6, "top_p": 7, "min_p": 8, "penalty": 9, "window": 10, "u": 11,
                 "ring_count": 12, "ring_head": 13, "n_banned": 14, "banned": 16}
SP_WORDS = 24

# Outputs, u32 words (mirrored as O_* #defines in shaders/sample.comp).
# | word | name        | type | meaning                                                        |
# |------|-------------|------|----------------------------------------------------------------|
# | 0    | token       | u32  | sampled token (0xFFFFFFFF when every token is banned)           |
# | 1    | p_final     | f32  | its probability in the final kept, renormalised distribution   |
# | 2    | p_model     | f32  | its probability under softmax(logits after bans/penalty)       |
# | 3    | h_model     | f32  | entropy of that model distribution, bits                       |
# | 4    | h_final     | f32  | entropy of the final distribution, bits                        |
# | 5    | p_max       | f32  | largest model probability                                      |
# | 6    | temperature | f32  | temperature used (0 = greedy)                                  |
# | 7    | n_kept      | u32  | tokens kept by the filters (1 when greedy)                     |
# | 8    | path        | u32  | diagnostics: 0 greedy, 1 list draw, 2 full-pass draw, 3 none   |
# | 9    | passes      | u32  | diagnostics: passes over the vocabulary (1 greedy, 3 typical)   |
# | 10   | listed      | u32  | diagnostics: tokens gathered into shared-memory lists           |
# | 11   | nonfinite   | u32  | logits that were NaN or +inf after the bans                     |
# | 12   | argmax      | u32  | the most likely token of the model distribution (p_max is its)  |
OUT_FIELDS = ("token", "p_final", "p_model", "h_model", "h_final", "p_max", "temperature", "n_kept", "path",
              "passes", "listed", "nonfinite", "argmax")
OUT_WORDS = 16
PATH_GREEDY, PATH_LIST, PATH_FULL, PATH_NONE = 0, 1, 2, 3
NO_TOKEN = 0xFFFFFFFF


@dataclass(frozen=True)
class SamplerSettings:
    """What to sample with; validated on construction. `top_t` is an alias of `min_p`."""
    temperature: float = 1.0
    temp_rule: str = "fixed"
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    edt_theta: float = 1.0
    edt_n: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_window: int = 64
    top_t: InitVar[float | None] = None

    def __post_init__(self, top_t):
        if top_t is not None:
            if self.min_p != 0.0 and self.min_p != top_t:
                raise VkharpError(f"sampler: min_p={self.min_p} and top_t={top_t} name the same setting; give one")
            object.__setattr__(self, "min_p", top_t)
        for name in ("temperature", "dynatemp_range", "dynatemp_exponent", "edt_theta", "edt_n",
                     "top_p", "min_p", "repeat_penalty"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise VkharpError(f"sampler: {name} must be a finite number, got {v!r}")
        for name in ("top_k", "repeat_window"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 or v >= 2**31:
                raise VkharpError(f"sampler: {name} must be a non-negative integer, got {v!r}")
        checks = [
            ("temp_rule", self.temp_rule in TEMP_RULES, f"one of {', '.join(TEMP_RULES)}"),
            ("temperature", self.temperature >= 0, "≥ 0 (0 = greedy)"),
            ("dynatemp_range", self.dynatemp_range >= 0, "≥ 0"),
            ("dynatemp_exponent", self.dynatemp_exponent >= 0, "≥ 0"),
            ("edt_theta", self.edt_theta >= 0, "≥ 0"),
            ("edt_n", 0 < self.edt_n < 1, "in (0, 1)"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1] (1 = off)"),
            ("min_p", 0 <= self.min_p <= 1, "in [0, 1] (0 = off)"),
            ("repeat_penalty", self.repeat_penalty > 0, "> 0 (1 = off)"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise VkharpError(f"sampler: {name} must be {want}, got {getattr(self, name)!r}")

    @property
    def greedy(self) -> bool:
        """True when every step is greedy whatever the logits (EDT's T never exceeds T0)."""
        return self.temperature < GREEDY_T and not (self.temp_rule == "dynatemp" and self.dynatemp_range > 0)


SamplerSettings.top_t = property(lambda self: self.min_p, doc="Alias of min_p (topT: keep p ≥ top_t · p_max).")


def _f32_bits(x: float) -> np.uint32:
    return np.array([x], dtype=np.float32).view(np.uint32)[0]


def pack_sample_params(settings: SamplerSettings, *, u: float, banned=(), ring_count: int = 0,
                       ring_head: int = 0, ring_capacity: int | None = None) -> np.ndarray:
    """The SP_WORDS u32 words of one step: settings, the uniform u, banned ids, the ring's state."""
    if not isinstance(settings, SamplerSettings):
        raise VkharpError(f"sampler: settings must be a SamplerSettings, got {type(settings).__name__}")
    if not (isinstance(u, (float, int, np.floating)) and 0.0 <= u < 1.0):
        raise VkharpError(f"sampler: u must be a number in [0, 1), got {u!r}")
    banned = [int(b) for b in banned]
    if len(banned) > MAX_BANNED:
        raise VkharpError(f"sampler: at most {MAX_BANNED} banned ids per step, got {len(banned)}")
    if any(b < 0 or b >= 2**31 for b in banned):
        raise VkharpError(f"sampler: banned ids must be token ids ≥ 0, got {banned}")
    if ring_count < 0 or ring_head < 0:
        raise VkharpError(f"sampler: ring_count and ring_head must be ≥ 0, got {ring_count}, {ring_head}")
    if ring_capacity is not None and (ring_count > ring_capacity or (ring_head >= ring_capacity and ring_capacity > 0)):
        raise VkharpError(f"sampler: ring_count={ring_count} / ring_head={ring_head} do not fit a ring of "
                          f"{ring_capacity} tokens")
    u32 = np.float32(u)
    if u32 >= 1.0:  # u just below 1 rounds up to 1.0 in f32
        u32 = np.nextafter(np.float32(1.0), np.float32(0.0))
    w = np.zeros(SP_WORDS, dtype=np.uint32)
    s, P = settings, SAMPLE_PARAMS
    w[P["temp"]] = _f32_bits(s.temperature)
    w[P["rule"]] = TEMP_RULES[s.temp_rule]
    w[P["dyn_range"]] = _f32_bits(s.dynatemp_range)
    w[P["dyn_exp"]] = _f32_bits(s.dynatemp_exponent)
    w[P["edt_theta"]] = _f32_bits(s.edt_theta)
    w[P["edt_n"]] = _f32_bits(s.edt_n)
    w[P["top_k"]] = s.top_k
    w[P["top_p"]] = _f32_bits(s.top_p)
    w[P["min_p"]] = _f32_bits(s.min_p)
    w[P["penalty"]] = _f32_bits(s.repeat_penalty)
    w[P["window"]] = s.repeat_window
    w[P["u"]] = _f32_bits(u32)
    w[P["ring_count"]] = ring_count
    w[P["ring_head"]] = ring_head
    w[P["n_banned"]] = len(banned)
    w[P["banned"]:P["banned"] + len(banned)] = banned
    return w


def unpack_params(words) -> dict:
    """The inverse of pack_sample_params (floats decoded): what the shader and the twin read."""
    w = np.asarray(words, dtype=np.uint32).reshape(-1)
    if w.size < SP_WORDS:
        raise VkharpError(f"sampler: params need {SP_WORDS} words, got {w.size}")
    f = w.view(np.float32)
    P = SAMPLE_PARAMS
    out = {k: float(f[i]) for k, i in P.items() if k not in ("rule", "top_k", "window", "ring_count", "ring_head",
                                                            "n_banned", "banned")}
    out.update({k: int(w[P[k]]) for k in ("rule", "top_k", "window", "ring_count", "ring_head", "n_banned")})
    out["banned"] = [int(b) for b in w[P["banned"]:P["banned"] + min(out["n_banned"], MAX_BANNED)]]
    return out


@dataclass(frozen=True)
class SampleResult:
    token: int
    p_final: float
    p_model: float
    h_model: float       # bits
    h_final: float       # bits
    p_max: float
    temperature: float
    n_kept: int
    path: int = -1       # shader diagnostics (-1 from the twin)
    passes: int = -1
    listed: int = -1
    nonfinite: int = 0   # logits that were NaN or +inf (after the bans): a broken model, never a draw
    argmax: int = -1     # the model distribution's most likely token (lowest id on ties; p_max is its)


def unpack_result(words) -> SampleResult:
    """Decode the shader's OUT_WORDS output words."""
    w = np.asarray(words).reshape(-1)[:OUT_WORDS].view(np.uint32)
    f = w.view(np.float32)
    return SampleResult(int(w[0]), float(f[1]), float(f[2]), float(f[3]), float(f[4]), float(f[5]),
                        float(f[6]), int(w[7]), int(w[8]), int(w[9]), int(w[10]), int(w[11]), int(w[12]))
