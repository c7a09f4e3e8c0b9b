"""Twins of shaders/attention_seq.comp: causal GQA over one sequence at positions 0..T-1 and its
backward (float64 inside). Key j is visible to query i iff lo(i) <= j <= i, lo = max(0, i + 1 - window)
with a window, else 0 (engine/reference/attention.py's convention)."""
import numpy as np


def _scores(q, k, n_heads, n_kv_heads, scale, window, softcap):
    """Capped scores s [H, T, T] with masked entries -inf, and the cap's derivative there."""
    t = q.shape[0]
    kh = k[:, np.arange(n_heads) // (n_heads // n_kv_heads)]            # [T, H, D]
    s = scale * np.einsum("ihd,jhd->hij", q, kh)
    grad = np.ones_like(s)
    if softcap:
        s = softcap * np.tanh(s / softcap)
        grad = 1.0 - (s / softcap) ** 2
    i, j = np.arange(t)[:, None], np.arange(t)[None, :]
    visible = (j <= i) & ((j > i - window) if window else True)
    return np.where(visible, s, -np.inf), grad


def _f64(*arrays, shapes):
    return [np.asarray(a, np.float64).reshape(s) for a, s in zip(arrays, shapes)]


def attention_seq(q, k, v, *, n_heads: int, n_kv_heads: int, head_dim: int, scale: float, window: int = 0,
                  softcap: float = 0.0):
    """(out f32[T, HQ, D], lse f32[T, HQ]): softmax attention of each row over the keys it sees."""
    qs, kvs = (-1, n_heads, head_dim), (-1, n_kv_heads, head_dim)
    q, k, v = _f64(q, k, v, shapes=(qs, kvs, kvs))
    s, _ = _scores(q, k, n_heads, n_kv_heads, scale, window, softcap)
    m = s.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(s - m).sum(axis=-1, keepdims=True))               # [H, T, 1]
    p = np.exp(s - lse)
    vh = v[:, np.arange(n_heads) // (n_heads // n_kv_heads)]
    out = np.einsum("hij,jhd->ihd", p, vh)
    return out.astype(np.float32), lse[..., 0].T.astype(np.float32)


def attention_back(q, k, v, out, lse, dout, *, n_heads: int, n_kv_heads: int, head_dim: int, scale: float,
                   window: int = 0, softcap: float = 0.0):
    """(dq, dk, dv) from the forward's out and lse: P = exp(s - lse), delta_i = dout_i . out_i,
    dS = P (dout . v - delta) c'(s); dq = scale dS k, dk = scale dSᵀ q and dv = Pᵀ dout summed over the
    query heads of each kv head."""
    qs, kvs = (-1, n_heads, head_dim), (-1, n_kv_heads, head_dim)
    q, k, v, out, dout = _f64(q, k, v, out, dout, shapes=(qs, kvs, kvs, qs, qs))
    g = n_heads // n_kv_heads
    s, cgrad = _scores(q, k, n_heads, n_kv_heads, scale, window, softcap)
    p = np.exp(s - np.asarray(lse, np.float64).T[..., None])                     # [H, T, T], 0 where masked
    kh, vh = k[:, np.arange(n_heads) // g], v[:, np.arange(n_heads) // g]
    delta = np.einsum("ihd,ihd->hi", dout, out)[..., None]
    ds = p * (np.einsum("ihd,jhd->hij", dout, vh) - delta) * cgrad
    dq = scale * np.einsum("hij,jhd->ihd", ds, kh)
    dk_h = scale * np.einsum("hij,ihd->jhd", ds, q)
    dv_h = np.einsum("hij,ihd->jhd", p, dout)
    t = q.shape[0]
    dk = dk_h.reshape(t, n_kv_heads, g, head_dim).sum(axis=2)
    dv = dv_h.reshape(t, n_kv_heads, g, head_dim).sum(axis=2)
    return dq.astype(np.float32), dk.astype(np.float32), dv.astype(np.float32)
