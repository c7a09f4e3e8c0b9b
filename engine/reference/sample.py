"""Twin of shaders/sample.comp: the sampling stages in the order engine/sampling.py writes down.

Float64 inside, except where the shader's f32 values decide a tie: the penalised logits are f32
(as the shader sees them) and the weights w = exp((z − max)/T) are rounded to f32 before the
filters compare them, so equal logits give equal weights in both.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import VkharpError
from ..sampling import (GREEDY_T, MAX_BANNED, NO_TOKEN, SamplerSettings, SampleResult, pack_sample_params,
                        unpack_params)

LN2 = math.log(2.0)


def penalised_logits(logits, params: dict, recent) -> np.ndarray:
    """Stages 1–2: bans → −inf, then the repetition penalty over the window (each token once)."""
    z = np.array(logits, dtype=np.float32).reshape(-1).copy()
    vocab = z.size
    pen = np.float32(params["penalty"])
    ring = np.asarray(recent, dtype=np.uint32).reshape(-1)
    rw = ring.size
    n_win = min(params["window"], params["ring_count"], rw)
    if pen != np.float32(1.0) and n_win > 0:
        head = params["ring_head"] % rw
        toks = {int(ring[(head + rw - 1 - j) % rw]) for j in range(n_win)}
        for tok in toks:
            if tok < vocab:
                z[tok] = z[tok] / pen if z[tok] > 0 else z[tok] * pen
    for b in params["banned"][:MAX_BANNED]:
        if b < vocab:
            z[b] = -np.inf
    return z


def temperature(rule: int, params: dict, h_nats: float, n_allowed: int) -> float:
    """Stage 4 (fixed, dynatemp, EDT); h_nats is the model entropy in nats."""
    t = params["temp"]
    if rule == 1:  # dynatemp
        rng = params["dyn_range"]
        if rng <= 0:
            return t
        t_min, t_max = max(0.0, t - rng), t + rng
        hn = h_nats / math.log(n_allowed) if n_allowed > 1 else 0.0
        e = params["dyn_exp"]
        f = (1.0 if e == 0 else 0.0) if hn <= 0 else hn ** e
        return t_min + (t_max - t_min) * f
    if rule == 2:  # EDT
        return t * params["edt_n"] ** (params["edt_theta"] / h_nats) if h_nats > 0 else 0.0
    return t


def sample(logits, params, recent=(0,), *, return_margin: bool = False, **pack_kwargs):
    """Reference result of one sampling step (see _sample), with the count of NaN / +inf logits
    after the bans, as the shader reports it."""
    with np.errstate(invalid="ignore"):      # NaN logits: the result is undefined, the count is not
        out = _sample(logits, params, recent, return_margin=return_margin, **pack_kwargs)
    res = out[0] if return_margin else out
    if isinstance(params, SamplerSettings):
        params = pack_sample_params(params, **{k: v for k, v in pack_kwargs.items()})
    z = penalised_logits(logits, unpack_params(params), recent)
    res = dataclasses.replace(res, nonfinite=int(np.isnan(z).sum() + np.isposinf(z).sum()))
    return (res, out[1]) if return_margin else res


def _sample(logits, params, recent=(0,), *, return_margin: bool = False, **pack_kwargs):
    """Reference result of one sampling step.

    `params`: the packed u32 words (engine.sampling.pack_sample_params), or a SamplerSettings with
    the packer's keywords (u=..., banned=..., ring_count=..., ring_head=...). `recent`: the ring.
    With return_margin, also the smallest relative distance of a random decision to its threshold
    (the draw's u against the cumulative mass at the chosen token's edges, and top-p's target
    against the nucleus edges): a float shader may decide the other way within ~1e-6 of one.
    """
    if isinstance(params, SamplerSettings):
        params = pack_sample_params(params, **pack_kwargs)
    elif pack_kwargs:
        raise VkharpError(f"sample: packer keywords {sorted(pack_kwargs)} need a SamplerSettings, not words")
    p = unpack_params(params)
    z = penalised_logits(logits, p, recent)
    allowed = z > -np.inf
    n_allowed = int(allowed.sum())
    if n_allowed == 0:
        res = SampleResult(NO_TOKEN, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 0, argmax=NO_TOKEN)
        return (res, math.inf) if return_margin else res
    # stage 3: model statistics at temperature 1
    m = float(z[allowed].max())
    arg = int(np.argmax(z))                     # first index of the max
    d = np.where(allowed, z.astype(np.float64) - m, -np.inf)
    e = np.exp(d)
    s1 = float(e.sum())
    h_nats = max(0.0, math.log(s1) - float((e[allowed] * d[allowed]).sum()) / s1)
    h_model, p_max = h_nats / LN2, 1.0 / s1
    p_model_of = lambda tok: float(e[tok] / s1)  # noqa: E731
    # stage 4
    t = temperature(p["rule"], p, h_nats, n_allowed)
    if t < GREEDY_T:
        res = SampleResult(arg, 1.0, p_model_of(arg), h_model, 0.0, p_max, 0.0, 1, argmax=arg)
        return (res, math.inf) if return_margin else res
    # stage 5: unnormalised weights, f32 as the shader keeps them
    w = np.where(allowed, np.exp(d / np.float32(t).astype(np.float64)), 0.0).astype(np.float32)
    w[z == m] = 1.0
    w[w < np.finfo(np.float32).tiny] = 0.0       # the shader keeps no denormal weights
    w64 = w.astype(np.float64)
    # stage 6: thresholds on w (ties kept)
    margin = math.inf
    positive = w > 0
    tau = np.float32(np.min(w[positive]))
    order = np.argsort(-w64, kind="stable")
    ws = w[order]
    k = p["top_k"]
    tau_k = tau
    if 0 < k < int(positive.sum()):
        tau_k = ws[k - 1]
    mass_k = float(w64[w >= tau_k].sum())
    tau_p = tau
    if p["top_p"] < 1.0:
        cand = ws[ws >= tau_k].astype(np.float64)
        cum = np.cumsum(cand)
        target = np.float32(p["top_p"]) * mass_k
        j = int(np.searchsorted(cum, target, side="left"))
        j = min(j, cand.size - 1)
        tau_p = np.float32(cand[j])
        edges = [cum[j]] + ([cum[j - 1]] if j > 0 else [])
        margin = min(margin, min(abs(x - target) for x in edges) / mass_k)
    tau_m = np.float32(p["min_p"])
    thr = max(tau_k, tau_p, tau_m, np.float32(np.nextafter(np.float32(0), np.float32(1))))
    kept = w >= thr
    # stage 7: draw in index order
    wk = np.where(kept, w64, 0.0)
    mass = float(wk.sum())
    cum = np.cumsum(wk)
    target = np.float32(p["u"]) * mass
    idx = np.flatnonzero(kept)
    j = int(np.searchsorted(cum[idx], target, side="left"))
    j = min(j, idx.size - 1)
    tok = int(idx[j])
    edges = [cum[tok]] + ([cum[idx[j - 1]]] if j > 0 else [0.0])
    margin = min(margin, min(abs(x - target) for x in edges) / mass)
    q = w64[kept] / mass
    h_final = float(-(q * np.log(q)).sum()) / LN2
    res = SampleResult(tok, float(w64[tok] / mass), p_model_of(tok), h_model, h_final, p_max, float(np.float32(t)),
                       int(kept.sum()), argmax=arg)
    return (res, margin) if return_margin else res
