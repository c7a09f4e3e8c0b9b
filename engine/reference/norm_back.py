"""Twin of shaders/norm_back.comp: the RMSNorm backward, float64 inside."""
import numpy as np


def rmsnorm_back(x: np.ndarray, weight: np.ndarray, dy: np.ndarray, *, eps: float):
    """(dx, dweight) of y = x / rms(x) * weight over the last axis (weight f32[D], as stored on the
    device: Gemma's 1 + w already folded in). x [..., D] is any number of rows (qk_norm: [T, H, D]);
    dweight f32[D] sums over all of them."""
    x64, w, g = x.astype(np.float64), np.asarray(weight, np.float64), np.asarray(dy, np.float64).reshape(x.shape)
    d = x.shape[-1]
    rs = 1.0 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + eps)
    gw = g * w
    dx = rs * gw - rs ** 3 * x64 * np.sum(gw * x64, axis=-1, keepdims=True) / d
    dweight = np.sum((g * x64 * rs).reshape(-1, d), axis=0)
    return dx.astype(np.float32), dweight.astype(np.float32)
