"""Helpers for shader-vs-twin tests."""
import numpy as np


def rel_err(got, want) -> float:
    """‖got − want‖ / ‖want‖ over all elements (want must be non-zero)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def max_rel_err(got, want, floor=1e-6) -> float:
    """Worst element error relative to the largest |want| (catches one wrong element)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), floor))


def rand(rng, *shape, scale=1.0):
    """Random non-zero float32 values."""
    x = rng.standard_normal(shape).astype(np.float32) * scale
    x[x == 0] = 0.5
    return x
