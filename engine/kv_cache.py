"""The KV cache: K and V on the device and one position, the single source of truth.

Rollback and HARP only move the position: `truncate(n)` forgets everything from position n on, and
the next chunk simply overwrites it. The cache also keeps the token ids it holds, so that a caller
(the chat's next turn, HARP's reframed cache) can find how much of a new context it already has.
Entries are f16 (llama.cpp's default: half the bytes for decode attention to read, which is what
its cost grows with along the context) or f32 (`dtype`; engine/ops/attention.py has the layout).
Layers are stacked into as few buffers as the device's storage-buffer limit allows ([layers, kv_heads, ctx, head_dim] each), so that one attention pipeline
serves every layer (the layer is a per-dispatch push constant). The buffers are `store` buffers
(device-local, no host copy): a program writes the current chunk's keys and reads only older
positions, so no program reads what it wrote (see engine/device.py on synchronisation).
"""
from __future__ import annotations

from .device import Buffer, Device
from .errors import VkharpError
from .ops.attention import KV_ITEM_BYTES, check_kv_type, kv_cache_buffers


class KVCache:
    def __init__(self, device: Device, *, n_layers: int, n_kv_heads: int, head_dim: int, ctx: int,
                 dtype: str = "f32"):
        check_kv_type(dtype, head_dim)
        self.ctx, self.n_layers, self.dtype = ctx, n_layers, dtype
        per_layer = ctx * n_kv_heads * head_dim * KV_ITEM_BYTES[dtype]
        per_group = max(1, device.max_buffer_bytes // per_layer)   # kv_cache_buffers explains a misfit
        self.k: list[Buffer] = []
        self.v: list[Buffer] = []
        self._where: list[tuple[int, int]] = []
        for l0 in range(0, n_layers, per_group):
            n = min(per_group, n_layers - l0)
            k, v = kv_cache_buffers(device, ctx, n_kv_heads, head_dim, name=f"layers{l0}-{l0 + n - 1}", layers=n,
                                        dtype=dtype)
            self._where += [(len(self.k), i) for i in range(n)]
            self.k.append(k)
            self.v.append(v)
        self.tokens: list[int] = []

    @property
    def pos(self) -> int:
        """Positions held (the next token goes here)."""
        return len(self.tokens)

    def append(self, ids) -> None:
        """Record that a program wrote these tokens at positions pos, pos+1, ..."""
        if self.pos + len(ids) > self.ctx:
            raise VkharpError(f"the KV cache holds {self.ctx} positions; {self.pos} + {len(ids)} do not fit")
        self.tokens.extend(int(t) for t in ids)

    def common_prefix(self, ids) -> int:
        """How many leading tokens of `ids` the cache already holds."""
        n = 0
        for a, b in zip(self.tokens, ids):
            if a != int(b):
                break
            n += 1
        return n

    def layer(self, i: int) -> tuple[Buffer, Buffer, int]:
        """(K buffer, V buffer, index within them) of layer i."""
        g, j = self._where[i]
        return self.k[g], self.v[g], j

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.k + self.v)

    def truncate(self, n: int) -> None:
        """Keep the first n positions (a position move: nothing is copied or cleared)."""
        if not 0 <= n <= self.pos:
            raise VkharpError(f"cannot truncate the KV cache to {n}: it holds {self.pos} positions")
        del self.tokens[n:]

    def reset(self) -> None:
        self.tokens.clear()

    def room(self) -> int:
        return self.ctx - self.pos
