"""Twin of shaders/embed_back.comp: the embedding gather's backward, float64 inside."""
import numpy as np


def embed_back(ids, dx, *, vocab: int, scale: float = 1.0) -> np.ndarray:
    """dtable f32[vocab, H] = scale * sum over the tokens n with ids[n] = v of dx[n] (rows no id names: 0;
    ids >= vocab are skipped)."""
    ids = np.asarray(ids, np.int64).reshape(-1)
    dx = np.asarray(dx, np.float64).reshape(ids.size, -1)
    out = np.zeros((vocab, dx.shape[1]))
    ok = ids < vocab
    np.add.at(out, ids[ok], dx[ok])
    return (scale * out).astype(np.float32)
