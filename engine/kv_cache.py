"""The KV cache: per-layer K and V buffers on the device and one position, the single source of truth.

Rollback and HARP only move the position: `truncate(n)` forgets everything from position n on, and
the next chunk simply overwrites it. The cache buffers are `store` buffers (device-local, no host
copy); programs write the current chunk's keys into them and read only older positions, so no
program ever reads what it wrote (see engine/device.py on synchronisation).
"""
from __future__ import annotations

from .device import Device
from .errors import VkharpError
from .ops.attention import kv_cache_buffers


class KVCache:
    def __init__(self, device: Device, *, n_layers: int, n_kv_heads: int, head_dim: int, ctx: int):
        self.ctx, self.n_layers = ctx, n_layers
        pairs = [kv_cache_buffers(device, ctx, n_kv_heads, head_dim, name=f"layer{i}") for i in range(n_layers)]
        self.k = [k for k, _ in pairs]
        self.v = [v for _, v in pairs]
        self.pos = 0

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.k + self.v)

    def truncate(self, n: int) -> None:
        """Keep the first n positions (a position move: nothing is copied or cleared)."""
        if not 0 <= n <= self.pos:
            raise VkharpError(f"cannot truncate the KV cache to {n}: it holds {self.pos} positions")
        self.pos = n

    def reset(self) -> None:
        self.pos = 0

    def room(self) -> int:
        return self.ctx - self.pos
