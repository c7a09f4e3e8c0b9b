"""The safetensors file format, read through numpy memmaps and written as a stream.

Why not the `safetensors` package here: its numpy loader has no bfloat16 and its writer needs every
tensor in memory at once. The format is small (8-byte little-endian header length, a JSON header of
{name: {dtype, shape, data_offsets}}, then the data), so reading views lazily and writing tensors one
at a time keeps peak memory at one tensor. Files written here are ordinary safetensors files
(`safetensors.safe_open` reads them).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VkharpError

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32,
          "U64": np.uint64, "BOOL": np.bool_}
CODES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.uint16): "U16",
         np.dtype(np.uint32): "U32", np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8"}
_MAX_HEADER = 100 * 2**20


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str               # safetensors code: F32, F16, BF16, ...
    shape: tuple[int, ...]
    begin: int               # absolute byte offsets in the file
    end: int


def read_header(path: Path) -> tuple[dict[str, TensorEntry], dict]:
    """The tensor table and __metadata__ of a safetensors file, checked against the file's size."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise VkharpError(f"{path} is not a safetensors file (only {size} bytes)")
        n = struct.unpack("<Q", head)[0]
        if n > min(_MAX_HEADER, size - 8):
            raise VkharpError(f"{path} is truncated or not a safetensors file (header of {n} bytes, file of {size})")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise VkharpError(f"{path} has a corrupt safetensors header ({e})") from None
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, t in header.items():
        try:
            dtype, shape, (b, e) = t["dtype"], tuple(int(s) for s in t["shape"]), t["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise VkharpError(f"{path}: corrupt header entry for tensor {name!r}") from None
        if dtype not in DTYPES:
            raise VkharpError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
        want = int(np.prod(shape, dtype=np.int64)) * np.dtype(DTYPES[dtype]).itemsize
        if e - b != want:
            raise VkharpError(f"{path}: tensor {name!r} {dtype}{list(shape)} should take {want} bytes, header says {e - b}")
        if base + e > size:
            raise VkharpError(f"{path} is truncated: tensor {name!r} ends at byte {base + e}, the file has {size} "
                              f"bytes; download or write it again")
        out[name] = TensorEntry(name, dtype, shape, base + b, base + e)
    return out, meta


def read_tensor(path: Path, entry: TensorEntry) -> np.ndarray:
    """A read-only memmap view of one tensor (BF16 comes back as its raw uint16 bits)."""
    dt = np.dtype(DTYPES[entry.dtype])
    if entry.end == entry.begin:
        return np.zeros(entry.shape, dt)
    return np.memmap(path, dtype=dt, mode="r", offset=entry.begin, shape=entry.shape)


def to_float32(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Decode a tensor read by read_tensor to float32 (BF16: the bits shifted into the high half)."""
    if dtype == "BF16":
        return (np.asarray(arr, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    if dtype not in ("F32", "F16", "F64"):
        raise VkharpError(f"expected a floating-point tensor, got {dtype}")
    return np.asarray(arr, dtype=np.float32)


class StreamWriter:
    """Write a safetensors file whose table is known up front, one tensor at a time, hashing as it goes.

    `layout` is [(name, numpy dtype, shape)] in file order; `write(name, array)` must then be called
    for each name in that order. `close()` checks that everything arrived and returns the sha256.
    """

    def __init__(self, path: Path, layout: list[tuple[str, np.dtype, tuple[int, ...]]], metadata: dict | None = None):
        self.path = Path(path)
        header, offset = {}, 0
        self._order = []
        for name, dtype, shape in layout:
            nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            header[name] = {"dtype": CODES[np.dtype(dtype)], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            self._order.append((name, np.dtype(dtype), tuple(shape), nbytes))
            offset += nbytes
        if metadata:
            header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-(8 + len(raw)) % 8)   # data starts 8-byte aligned
        self.size = 8 + len(raw) + offset
        self._sha = hashlib.sha256()
        self._f = open(self.path, "wb")
        self._emit(struct.pack("<Q", len(raw)) + raw)
        self._next = 0

    def _emit(self, b) -> None:
        self._sha.update(b)
        self._f.write(b)

    def write(self, name: str, arr: np.ndarray) -> None:
        if self._next >= len(self._order):
            raise VkharpError(f"internal: {self.path.name} got an extra tensor {name!r}")
        want_name, dtype, shape, nbytes = self._order[self._next]
        arr = np.ascontiguousarray(arr)
        if name != want_name or arr.dtype != dtype or tuple(arr.shape) != shape:
            raise VkharpError(f"internal: {self.path.name} expected {want_name} {dtype}{list(shape)}, "
                              f"got {name} {arr.dtype}{list(arr.shape)}")
        self._emit(memoryview(arr.reshape(-1).view(np.uint8)))
        self._next += 1

    def close(self) -> str:
        self._f.close()
        if self._next != len(self._order):
            raise VkharpError(f"internal: {self.path.name} is missing {self._order[self._next][0]}")
        if os.path.getsize(self.path) != self.size:
            raise VkharpError(f"{self.path} has {os.path.getsize(self.path)} bytes, expected {self.size} (disk full?)")
        return self._sha.hexdigest()

    def abort(self) -> None:
        self._f.close()


def sha256_file(path: Path, chunk: int = 16 * 2**20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()
