"""Twin of shaders/rope.comp: HF's rotary embedding with f32 angles (float(pos) * inv_freq rounded to
f32, as transformers computes them), sin/cos and the rotation in float64."""
import numpy as np


def rope_angles(positions: np.ndarray, inv_freq: np.ndarray) -> np.ndarray:
    """f32[len(positions), ROT/2]: the angles exactly as HF rounds them (one f32 product)."""
    return np.asarray(positions, dtype=np.float32)[:, None] * np.asarray(inv_freq, dtype=np.float32)[None, :]


def rope(q: np.ndarray, k: np.ndarray, inv_freq: np.ndarray, pos: int, n: int, *, style: str = "half",
         dual: bool = False, q_scale: float = 1.0):
    """Return rotated copies of q [N, HQ, D] and k [N, HK, D]; rows t >= n are unchanged.
    dual=True: every row at position pos (HARP's two streams of one token); q_scale multiplies q's
    rotated dims (longrope's attention factor squared)."""
    rot = 2 * len(inv_freq)
    a = rope_angles(pos + (0 * np.arange(n) if dual else np.arange(n)), inv_freq).astype(np.float64)[:, None, :]  # [n, 1, ROT/2]
    cos, sin = np.cos(a), np.sin(a)
    out = []
    for x, f in ((q, q_scale), (k, 1.0)):
        y = np.array(x, dtype=np.float32, copy=True)
        x64 = x[:n].astype(np.float64)
        if style == "half":
            i0, i1 = np.arange(rot // 2), np.arange(rot // 2) + rot // 2
        elif style == "interleaved":
            i0, i1 = np.arange(0, rot, 2), np.arange(1, rot, 2)
        else:
            raise ValueError(style)
        x0, x1 = x64[..., i0], x64[..., i1]
        y[:n, :, i0] = (f * (x0 * cos - x1 * sin)).astype(np.float32)
        y[:n, :, i1] = (f * (x1 * cos + x0 * sin)).astype(np.float32)
        out.append(y)
    return out[0], out[1]


def rope_back(dq: np.ndarray, dk: np.ndarray, inv_freq: np.ndarray, pos: int, n: int, *, style: str = "half",
              q_scale: float = 1.0):
    """Gradients through rope: dq, dk rotated by -angle (the transpose of the rotation), q's rotated dims
    times q_scale, as the forward scales them. Rows t >= n are unchanged."""
    rot = 2 * len(inv_freq)
    a = rope_angles(pos + np.arange(n), inv_freq).astype(np.float64)[:, None, :]
    cos, sin = np.cos(a), np.sin(a)
    if style == "half":
        i0, i1 = np.arange(rot // 2), np.arange(rot // 2) + rot // 2
    elif style == "interleaved":
        i0, i1 = np.arange(0, rot, 2), np.arange(1, rot, 2)
    else:
        raise ValueError(style)
    out = []
    for g, f in ((dq, q_scale), (dk, 1.0)):
        y = np.array(g, dtype=np.float32, copy=True)
        g64 = np.asarray(g)[:n].astype(np.float64)
        g0, g1 = g64[..., i0], g64[..., i1]
        y[:n, :, i0] = (f * (g0 * cos + g1 * sin)).astype(np.float32)
        y[:n, :, i1] = (f * (g1 * cos - g0 * sin)).astype(np.float32)
        out.append(y)
    return out[0], out[1]
