"""Twin of shaders/adamw.comp: one AdamW step with the gradient threshold, float32 like the shader
(the step is a handful of roundings per element; float32 here keeps the comparison tight)."""
import numpy as np

from ..hyper import HYPER_FIELDS


def adamw(param, grad, m, v, hyper):
    """(param, m, v, counts) after one step; counts = [elements updated, elements seen] (uint32).
    `hyper` as engine.ops.adamw.pack_hyper."""
    h = dict(zip(HYPER_FIELDS, np.asarray(hyper, np.float32)))
    p, g0 = np.array(param, np.float32), np.asarray(grad, np.float32)
    m, v = np.array(m, np.float32), np.array(v, np.float32)
    g = h["grad_scale"] * g0
    upd = ~(np.abs(g) < h["threshold"])
    gu = g[upd]
    mu = m[upd] + h["one_minus_beta1"] * (gu - m[upd])
    vu = h["beta2"] * v[upd] + h["one_minus_beta2"] * (gu * gu)
    denom = np.sqrt(vu) / h["bc2_sqrt"] + h["eps"]
    p[upd] = p[upd] * h["decay"] - h["step_size"] * (mu / denom)
    m[upd], v[upd] = mu, vu
    return p, m, v, np.array([int(upd.sum()), upd.size], np.uint32)
