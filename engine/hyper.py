"""Layout of the AdamW step's hyperparameter buffer (mirrors the H_ words of shaders/adamw.comp).

The values change every step (bias corrections, a clipping factor, a schedule's learning rate), and
kp fixes push constants at record time, so they travel in a host-written f32 "param" buffer.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import VkharpError

HYPER_FIELDS = ("lr", "beta1", "beta2", "eps", "weight_decay", "threshold", "grad_scale",
                "step_size", "bc2_sqrt", "decay", "one_minus_beta1", "one_minus_beta2")
HYPER_WORDS = len(HYPER_FIELDS)


def pack_hyper(lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, threshold: float,
               step: int, grad_scale: float = 1.0) -> np.ndarray:
    """The `hyper` buffer's f32 words for optimizer step `step` (1, 2, ...), derived in float64:
    step_size = lr / (1 - beta1^step), bc2_sqrt = sqrt(1 - beta2^step), decay = 1 - lr*weight_decay."""
    vals = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay,
            "threshold": threshold, "grad_scale": grad_scale}
    for k, v in vals.items():
        if not math.isfinite(float(v)):
            raise VkharpError(f"adamw: {k} must be finite, got {v}")
    if int(step) != step or step < 1:
        raise VkharpError(f"adamw: step counts from 1, got {step}")
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise VkharpError(f"adamw: betas must be in [0, 1), got ({beta1}, {beta2})")
    if eps <= 0 or lr < 0 or weight_decay < 0 or threshold < 0:
        raise VkharpError(f"adamw: eps must be > 0 and lr, weight_decay, threshold >= 0; got eps={eps}, lr={lr}, "
                          f"weight_decay={weight_decay}, threshold={threshold}")
    step = int(step)
    vals.update(step_size=lr / (1.0 - beta1 ** step), bc2_sqrt=math.sqrt(1.0 - beta2 ** step),
                decay=1.0 - lr * weight_decay, one_minus_beta1=1.0 - beta1, one_minus_beta2=1.0 - beta2)
    return np.array([vals[f] for f in HYPER_FIELDS], dtype=np.float32)
