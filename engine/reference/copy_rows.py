"""Twins of shaders/copy_rows.comp."""
import numpy as np


def copy_block(out: np.ndarray, x: np.ndarray, n: int, *, src: int = 0, dst: int = 0,
               accumulate: bool = False) -> np.ndarray:
    o = out.reshape(-1).astype(np.float32).copy()
    v = x.reshape(-1)[src:src + n].astype(np.float32)
    o[dst:dst + n] = (o[dst:dst + n] + v) if accumulate else v
    return o.reshape(out.shape)


def gather_rows(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    x = x.reshape(-1, x.shape[-1])
    return np.stack([x[i] if i < len(x) else np.zeros(x.shape[1], np.float32) for i in idx]).astype(np.float32)


def scatter_rows(out: np.ndarray, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    o = out.reshape(-1, out.shape[-1]).astype(np.float32).copy()
    valid = [i for i in idx if i < len(o)]
    if len(set(valid)) != len(valid):
        raise ValueError("scatter_rows: valid indices must be distinct")
    for j, i in enumerate(idx):
        if i < len(o):
            o[i] += x.reshape(len(idx), -1)[j]
    return o.reshape(out.shape)
