"""Twins of shaders/kv_append.comp and shaders/attention.comp (float64 inside).

Caches are arrays [n_kv_heads, ctx, head_dim] (the device layout, head-major): float32, or float16
for an f16 cache (its u32 words viewed as halves: `cache_halves`); kv_append rounds into them as
numpy's cast does (to nearest even). The chunk's own rows are read from k, v as the cache would hold
them (rounded to f16 for an f16 cache, as the shader does: a key reads the same in its own chunk as
later). `pos` = P_POS (tokens already in the cache), `n` = P_NTOK (valid rows of the chunk).
"""
import numpy as np


def cache_halves(words: np.ndarray, *shape: int) -> np.ndarray:
    """An f16 cache's u32 words (two halves each, the low one first) as float16, reshaped to `shape`."""
    return np.ascontiguousarray(words, dtype=np.uint32).view(np.float16).reshape(shape)


def kv_append(k_cache: np.ndarray, v_cache: np.ndarray, k: np.ndarray, v: np.ndarray, pos: int, n: int):
    """Return copies of the caches [hk, ctx, d] with chunk rows t < n stored at positions pos + t (< ctx)."""
    kc, vc = np.array(k_cache, copy=True), np.array(v_cache, copy=True)
    hk, rows, d = kc.shape
    n_kept = max(0, min(n, rows - pos))
    kc[:, pos:pos + n_kept] = np.swapaxes(np.asarray(k).reshape(-1, hk, d)[:n_kept], 0, 1)
    vc[:, pos:pos + n_kept] = np.swapaxes(np.asarray(v).reshape(-1, hk, d)[:n_kept], 0, 1)
    return kc, vc


def attention(q, k, v, k_cache, v_cache, pos: int, n: int, *, n_heads: int, n_kv_heads: int, head_dim: int,
              scale: float, window: int = 0, softcap: float = 0.0) -> np.ndarray:
    """out f32[N, n_heads, head_dim]: row t attends to positions [lo, pos + t] (cache below pos, chunk
    rows from pos on), lo = max(0, pos + t + 1 - window) with a window, else 0. Rows t >= n are 0."""
    g = n_heads // n_kv_heads
    q = np.asarray(q, dtype=np.float64).reshape(-1, n_heads, head_dim)
    kv_shape = (-1, n_kv_heads, head_dim)
    kc, vc = np.asarray(k_cache), np.asarray(v_cache)     # the chunk's rows as the cache holds them (f16: rounded)
    by_pos = lambda c: np.swapaxes(c.reshape(n_kv_heads, -1, head_dim), 0, 1)   # [ctx, hk, d]
    keys = np.concatenate([by_pos(kc)[:pos], np.asarray(k).reshape(kv_shape)[:n].astype(kc.dtype)])
    vals = np.concatenate([by_pos(vc)[:pos], np.asarray(v).reshape(kv_shape)[:n].astype(vc.dtype)])
    keys, vals = keys.astype(np.float64), vals.astype(np.float64)
    out = np.zeros(q.shape, dtype=np.float64)
    kv_of_head = np.arange(n_heads) // g
    for t in range(n):
        p = pos + t
        lo = max(0, p + 1 - window) if window else 0
        kt, vt = keys[lo:p + 1][:, kv_of_head], vals[lo:p + 1][:, kv_of_head]   # [L, H, D]
        s = scale * np.einsum("hd,lhd->hl", q[t], kt)
        if softcap:
            s = softcap * np.tanh(s / softcap)
        w = np.exp(s - s.max(axis=1, keepdims=True))
        out[t] = np.einsum("hl,lhd->hd", w / w.sum(axis=1, keepdims=True), vt)
    return out.astype(np.float32)


def kv_append_dual(caches, k, v, pos: int):
    """HARP's two streams: row t of k, v goes to caches[t] = (k_cache, v_cache) at position pos."""
    return [kv_append(kc, vc, np.asarray(k)[t:t + 1], np.asarray(v)[t:t + 1], pos, 1) for t, (kc, vc) in enumerate(caches)]


def attention_dual(q, k, v, caches, pos: int, **kw) -> np.ndarray:
    """HARP's two streams: row t attends, at position pos, over caches[t] and its own key."""
    return np.concatenate([attention(np.asarray(q)[t:t + 1], np.asarray(k)[t:t + 1], np.asarray(v)[t:t + 1],
                                     kc, vc, pos, 1, **kw) for t, (kc, vc) in enumerate(caches)])
