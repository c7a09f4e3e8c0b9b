"""The only module that imports kp: device selection, buffers, and recorded programs.

Synchronisation (the barrier hazard). kp records, before each dispatch, a barrier from *transfer
writes* to shader reads on that dispatch's buffers, and nothing from compute to compute. Two
dependent dispatches recorded back to back are therefore not ordered by the Vulkan spec, and kp
does not expose `vkCmdPipelineBarrier` to Python. The `Recorder` below makes every recorded
program correct by the spec with what kp does expose:

* A *sync point* is `OpTensorSyncLocal(S)`: for each buffer in S it records a buffer memory barrier
  (compute-shader write → transfer read) and a copy into the buffer's host staging copy. The next
  dispatch's own barrier (transfer → compute-shader read) chains after that copy. Together:
  - an execution dependency from *all* earlier compute work to *all* later compute work (stage
    masks are global; that settles write-after-read hazards on any buffer), and
  - a memory dependency (availability, then visibility) for the buffers in S only.
* The recorder tracks which buffers were written ("dirty") or read since the last sync point, and
  before each dispatch inserts the smallest sync point it needs: the dirty buffers the dispatch
  touches (read-after-write, write-after-write), or a one-word fence buffer when only an
  execution dependency is needed (write-after-read).
* Only `act` buffers (device-local + host staging) can be in S; data written and read in the same
  submission must live in them. Everything else (weights, the KV cache) is written by transfers or
  read only in a later submission: `Program.run()` waits for its fence and the next submission's
  implicit memory dependency makes those writes visible. A shader that writes the KV cache
  therefore never has its writes read in the same program (attention reads the current chunk's
  keys from activations).

The stress test in tests/test_barriers.py checks long chains of dependent dispatches exactly.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace

import numpy as np

from . import shaders
from .errors import DeviceLimitError, NoVulkanError, VkharpError
from .vulkan_probe import DeviceInfo, install_hint, probe_devices

try:  # kp is optional at import time so that `vkharp devices` can explain what is missing
    import kp as _kp
except ImportError:  # pragma: no cover - exercised only on broken installs
    _kp = None

_DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.uint32): "u32", np.dtype(np.int32): "i32"}


def _require_kp():
    if _kp is None:
        raise NoVulkanError("The Kompute Python module `kp` is not installed. Run `./vkharp` once from the "
                            "repository (it builds kp 0.9.0 offline), or see README.md.")
    return _kp


def list_devices() -> list[DeviceInfo]:
    """All Vulkan devices with their limits, or a NoVulkanError that says what to install."""
    return probe_devices()


def selected_index(index: int | None = None) -> int:
    if index is not None:
        return int(index)
    env = os.environ.get("VKHARP_DEVICE", "").strip()
    if env:
        try:
            return int(env)
        except ValueError:
            raise VkharpError(f"VKHARP_DEVICE={env!r} is not a device index; `vkharp devices` lists them") from None
    return 0


class Buffer:
    """One Vulkan buffer of 4-byte elements (f32, u32 or i32).

    kind:
      "act"   device-local + host staging copy: activations, parameters, outputs. Can be read back
              and can take part in sync points.
      "const" read-only data written once (weights): host-visible on unified-memory devices (no
              second copy), device-local otherwise (uploaded through a temporary staging buffer).
      "store" device-local, no host copy (KV cache): never read in the program that writes it.
    """

    def __init__(self, device: "Device", tensor, dtype, size: int, kind: str, name: str, shape=None):
        self.device, self.tensor, self.dtype, self.size, self.kind, self.name = device, tensor, dtype, size, kind, name
        self.shape = tuple(shape) if shape is not None else (size,)
        if int(np.prod(self.shape)) != size:
            raise VkharpError(f"buffer {name!r}: shape {self.shape} does not hold {size} elements")

    @property
    def nbytes(self) -> int:
        return self.size * 4

    def read(self) -> np.ndarray:
        """Copy the buffer back to the host (outside any recorded program; for tests and tools)."""
        if self.kind == "store":
            raise VkharpError(f"buffer {self.name!r} has no host copy (kind 'store')")
        if self.kind == "act":
            self.device._eval_once([_require_kp().OpTensorSyncLocal([self.tensor])])
        return np.array(self.tensor.data(), copy=True).view(self.dtype)

    def write(self, data) -> None:
        """Replace the buffer's contents from the host (outside any recorded program)."""
        arr = np.ascontiguousarray(data).reshape(-1)
        if arr.size != self.size or arr.dtype.itemsize != 4:
            raise VkharpError(f"buffer {self.name!r} holds {self.size} 4-byte elements; got {arr.size} of {arr.dtype}")
        if self.kind != "act":
            raise VkharpError(f"buffer {self.name!r} (kind {self.kind!r}) cannot be rewritten from the host")
        self.host_view()[:] = arr.view(self.dtype)
        self.device._eval_once([_require_kp().OpTensorSyncDevice([self.tensor])])

    def host_view(self) -> np.ndarray:
        """The mapped host staging memory (act buffers): write here, then sync in a program."""
        return self.tensor.data().view(self.dtype)

    def __repr__(self):
        return f"Buffer({self.name!r}, {_DTYPES[np.dtype(self.dtype)]}[{self.size}], {self.kind})"


class Device:
    """A Vulkan device opened through kp, with the limits the engine relies on.

    `max_buffer_bytes` lowers the per-buffer limit (tests use it to force tensor splitting).
    """

    def __init__(self, index: int | None = None, *, max_buffer_bytes: int | None = None):
        kp = _require_kp()
        self.index = selected_index(index)
        try:
            infos = probe_devices()
        except NoVulkanError:
            raise
        except Exception as exc:  # an exotic loader: keep going with conservative limits
            infos = None
            probe_error = exc
        if infos is not None:
            if not 0 <= self.index < len(infos):
                names = "; ".join(f"{d.index}: {d.name}" for d in infos)
                raise VkharpError(f"device {self.index} does not exist; available: {names}")
            info = infos[self.index]
        else:
            info = DeviceInfo(index=self.index, name="unknown", type="other", probed=False,
                              extras={"probe_error": str(probe_error)})
        env_limit = os.environ.get("VKHARP_MAX_BUFFER_BYTES")
        limit = max_buffer_bytes or (int(env_limit) if env_limit else None)
        if limit:
            info = replace(info, max_storage_buffer_range=min(info.max_storage_buffer_range, int(limit)))
        self.info = info
        try:
            self.mgr = kp.Manager(self.index)
        except Exception as exc:
            raise NoVulkanError(f"Vulkan device {self.index} ({info.name}) failed to start: {exc}. "
                                f"Update or reinstall its driver; {install_hint()}.") from None
        self._algorithms: dict = {}
        self.allocated_bytes = 0   # buffers made here (weights, KV cache, activations): device memory used
        self._algorithm_buffers: dict = {}
        self._fence = self.buffer(1, np.uint32, "act", name="fence")

    # -- buffers -------------------------------------------------------------------------------
    @property
    def max_buffer_bytes(self) -> int:
        return self.info.max_storage_buffer_range

    def _check_size(self, nbytes: int, name: str):
        if nbytes > self.max_buffer_bytes:
            raise DeviceLimitError(
                f"buffer {name!r} needs {nbytes / 2**20:.1f} MiB but {self.info.name} allows at most "
                f"{self.max_buffer_bytes / 2**20:.1f} MiB per storage buffer; split it into parts "
                f"(weights are split automatically) or use a smaller context")
        if nbytes == 0:
            raise VkharpError(f"buffer {name!r} would be empty")

    def buffer(self, size_or_data, dtype=np.float32, kind: str = "act", name: str = "", shape=None) -> Buffer:
        """A new buffer: `size` elements or a `shape` (zero-filled), or holding `data` (its shape kept)."""
        kp = _require_kp()
        if isinstance(size_or_data, (int, np.integer, tuple)):
            shape = tuple(np.atleast_1d(size_or_data).tolist()) if shape is None else tuple(shape)
            data = np.zeros(int(np.prod(shape)), dtype=dtype)
        else:
            arr = np.asarray(size_or_data)
            shape = arr.shape if shape is None else tuple(shape)
            data = np.ascontiguousarray(arr).reshape(-1)
            if data.dtype.itemsize != 4 or data.dtype not in _DTYPES:
                raise VkharpError(f"buffer {name!r}: data must be float32, uint32 or int32, got {data.dtype}")
            dtype = data.dtype
        self._check_size(data.nbytes, name)
        self.allocated_bytes += data.nbytes
        if kind == "act":
            tensor = self.mgr.tensor_t(data, kp.TensorTypes.device)
            buf = Buffer(self, tensor, np.dtype(dtype), data.size, kind, name, shape)
            self._eval_once([kp.OpTensorSyncDevice([tensor])])
            return buf
        if kind == "store":
            tensor = self.mgr.tensor_t(data, kp.TensorTypes.storage)
            buf = Buffer(self, tensor, np.dtype(dtype), data.size, kind, name, shape)
            if np.any(data):
                raise VkharpError("store buffers start zeroed; write them with shaders")
            self._zero(buf)
            return buf
        if kind == "const":
            return self.upload(data.reshape(shape), name)
        raise VkharpError(f"unknown buffer kind {kind!r}")

    def upload(self, data: np.ndarray, name: str = "") -> Buffer:
        """Upload read-only data (a weight part). Extra host memory is one part at most and is freed here."""
        kp = _require_kp()
        shape = np.shape(data)
        data = np.ascontiguousarray(data).reshape(-1)
        if data.dtype not in _DTYPES:
            raise VkharpError(f"buffer {name!r}: data must be float32, uint32 or int32, got {data.dtype}")
        self._check_size(data.nbytes, name)
        self.allocated_bytes += data.nbytes
        if self.info.unified_memory:
            # Device memory is host memory: one host-visible buffer the shaders read directly.
            tensor = self.mgr.tensor_t(data, kp.TensorTypes.host)
        else:
            staging = self.mgr.tensor_t(data, kp.TensorTypes.host)
            tensor = self.mgr.tensor_t(data, kp.TensorTypes.storage)  # data is not copied for storage
            self._eval_once([kp.OpTensorCopy([staging, tensor])])
            staging.destroy()
        return Buffer(self, tensor, data.dtype, data.size, "const", name, shape)

    def _zero(self, buf: Buffer):
        """Zero a store buffer with a shader (it has no host copy)."""
        rec = self.recorder()
        rec.dispatch("fill_u32", [buf], groups=_grid1d(self, buf.size, 256), consts={"N": buf.size, "VALUE": 0})
        rec.finish().run()

    def _eval_once(self, ops):
        seq = self.mgr.sequence()
        for op in ops:
            seq.record(op)
        seq.eval()

    def algorithm(self, shader: shaders.Shader, buffers: list[Buffer], groups, spec: np.ndarray, n_push: int):
        """The kp Algorithm (one Vulkan pipeline) for these bindings and constants, created once.

        Creating a pipeline compiles the shader (on lavapipe: LLVM, ~0.1-3 s), so identical requests
        reuse it: layers that share buffers differ only in push constants."""
        key = (shader.name, tuple(id(b) for b in buffers), tuple(groups), spec.tobytes(), n_push)
        algo = self._algorithms.get(key)
        if algo is None:
            algo = self.mgr.algorithm([b.tensor for b in buffers], shader.spirv, groups, spec,
                                      np.zeros(n_push, dtype=np.uint32))
            self._algorithms[key] = algo
            self._algorithm_buffers[key] = buffers  # keeps the ids in the key alive
        return algo

    @property
    def n_pipelines(self) -> int:
        return len(self._algorithms)

    def recorder(self, *, timestamps: bool = False, name: str = "") -> "Recorder":
        return Recorder(self, timestamps=timestamps, name=name)

    def close(self):
        if getattr(self, "mgr", None) is not None:
            self.mgr.destroy()
            self.mgr = None


def _grid1d(device: Device, n: int, per_group: int) -> tuple[int, int, int]:
    """Enough groups of `per_group` items for n, spread over y beyond the x limit (65535 typical)."""
    groups = max(1, -(-n // per_group))
    max_x = device.info.max_workgroup_count[0]
    if groups <= max_x:
        return (groups, 1, 1)
    return (max_x, -(-groups // max_x), 1)


grid1d = _grid1d


@dataclass
class RecordedStep:
    kind: str       # "dispatch", "sync", "upload", "download"
    label: str


class Recorder:
    """Records dispatches into one kp Sequence, inserting the sync points the spec requires."""

    def __init__(self, device: Device, *, timestamps: bool = False, name: str = ""):
        kp = _require_kp()
        self.device, self.name = device, name
        self._ops: list = []
        self.steps: list[RecordedStep] = []
        self._dirty: set[int] = set()         # id(buffer) written since the last memory barrier on it
        self._read: set[int] = set()          # id(buffer) read since the last sync point
        self._buffers: dict[int, Buffer] = {}
        self._group: list | None = None       # pending (reads, writes) inside parallel()
        self._timestamps = timestamps
        self._kp = kp
        self._started = False
        self.algorithms: list = []

    # The recorder keeps shader-visible effects ordered; uploads come first, downloads last.
    def upload(self, *bufs: Buffer):
        if self._started:
            raise VkharpError("uploads must be recorded before the first dispatch")
        for b in bufs:
            self._need_act(b, "uploaded inside a program")
        self._ops.append(self._kp.OpTensorSyncDevice([b.tensor for b in bufs]))
        self.steps.append(RecordedStep("upload", ",".join(b.name for b in bufs)))

    def download(self, *bufs: Buffer):
        """Copy buffers to their host staging copies at this point (read them with host_view())."""
        for b in bufs:
            self._need_act(b, "read back")
        self._ops.append(self._kp.OpTensorSyncLocal([b.tensor for b in bufs]))
        for b in bufs:
            self._dirty.discard(id(b))
        self.steps.append(RecordedStep("download", ",".join(b.name for b in bufs)))

    @contextlib.contextmanager
    def parallel(self):
        """Dispatches inside are independent of each other (disjoint writes, no reads of each other's
        writes): they are checked against the state before the block and need no sync among them."""
        if self._group is not None:  # nested: the inner dispatches simply join the outer block
            yield self
            return
        self._group = []
        try:
            yield self
        finally:
            group, self._group = self._group, None
            for reads, writes in group:
                self._read |= reads
                self._dirty |= writes

    def dispatch(self, shader_name: str, buffers: list[Buffer], groups, consts: dict | None = None,
                 push: dict | None = None, disjoint: tuple = ()):
        """Record one dispatch of a shader variant over `buffers` (in binding order).

        `consts` are specialization constants (fixed per pipeline); `push` are push constants (set per
        dispatch). Dispatches with the same shader, buffers, grid and constants share one pipeline.
        `disjoint`: buffers this dispatch touches only in regions no other dispatch of the program
        writes (the layer-stacked KV cache: each layer's append writes its own new positions, attention
        reads older ones); they are left out of hazard tracking. The caller guarantees it.
        """
        shader = shaders.get(shader_name)
        if len(buffers) != len(shader.bindings):
            names = ", ".join(b.name for b in shader.bindings)
            raise VkharpError(f"{shader_name} takes {len(shader.bindings)} buffers ({names}), got {len(buffers)}")
        groups = tuple(int(g) for g in (tuple(groups) + (1, 1, 1))[:3])
        limits = self.device.info.max_workgroup_count
        if any(g < 1 or g > m for g, m in zip(groups, limits)):
            raise DeviceLimitError(f"{shader_name}: work-group grid {groups} exceeds the device's {limits}")
        spec = pack_constants(shader, consts or {}, self.device)
        skip = {id(b) for b in disjoint}
        reads = {id(b) for b, bd in zip(buffers, shader.bindings) if "r" in bd.access} - skip
        writes = {id(b) for b, bd in zip(buffers, shader.bindings) if "w" in bd.access} - skip
        for b in buffers:
            self._buffers[id(b)] = b
            if b.kind == "const" and id(b) in writes:
                raise VkharpError(f"{shader_name} writes read-only buffer {b.name!r}")
        need_mem = (reads | writes) & self._dirty
        need_exec = bool(writes & self._read)
        if self._group is not None:
            # Inside parallel(): writes to one buffer from several dispatches are allowed (they must be
            # disjoint, e.g. weight parts); reading what the block writes, or writing what it reads, is not.
            g_reads = set().union(*(r for r, _ in self._group)) if self._group else set()
            g_writes = set().union(*(w for _, w in self._group)) if self._group else set()
            if reads & g_writes or writes & g_reads:
                raise VkharpError(f"{shader_name} inside parallel() depends on work recorded in the same "
                                  f"block; record it after the block")
        if need_mem or need_exec:  # dependencies on work before the block are synced as usual
            self._sync(need_mem)
        self._started = True
        push_words = pack_push(shader, push or {})
        algo = self.device.algorithm(shader, buffers, groups, spec, push_words.size)
        self.algorithms.append(algo)
        self._ops.append(self._kp.OpAlgoDispatch(algo, push_words) if push_words.size
                         else self._kp.OpAlgoDispatch(algo))
        self.steps.append(RecordedStep("dispatch", shader_name))
        if self._group is not None:
            self._group.append((reads, writes))
        else:
            self._read |= reads
            self._dirty |= writes

    def _sync(self, need_mem: set[int]):
        bufs = [self._buffers[i] for i in sorted(need_mem)]
        for b in bufs:
            self._need_act(b, "written and then used in the same program")
        tensors = [b.tensor for b in bufs] or [self.device._fence.tensor]
        self._ops.append(self._kp.OpTensorSyncLocal(tensors))
        self.steps.append(RecordedStep("sync", ",".join(b.name for b in bufs) or "(execution)"))
        self._dirty -= need_mem
        self._read = set()

    def _need_act(self, b: Buffer, why: str):
        if b.kind != "act":
            raise VkharpError(f"buffer {b.name!r} of kind {b.kind!r} cannot be {why}; use an 'act' buffer")

    def fork(self) -> "Recorder":
        """A copy to extend differently (e.g. with or without a download): the recorded dispatches and
        their pipelines are shared, nothing is recorded twice."""
        other = Recorder.__new__(Recorder)
        other.__dict__.update(self.__dict__)
        other._ops, other.steps, other.algorithms = list(self._ops), list(self.steps), list(self.algorithms)
        other._dirty, other._read, other._buffers = set(self._dirty), set(self._read), dict(self._buffers)
        return other

    def finish(self) -> "Program":
        seq = self.device.mgr.sequence(0, len(self._ops) + 1 if self._timestamps else 0)
        for op in self._ops:
            seq.record(op)
        return Program(self.device, seq, self.steps, self.algorithms, self._timestamps)


def pack_constants(shader: shaders.Shader, values: dict, device: Device) -> np.ndarray:
    """Specialization constants by name → the uint32 array kp passes by position.

    Floats travel as their bit patterns (a Python list would be converted to float32 values).
    A work-group size (constant `WG`) above the device limit raises DeviceLimitError.
    """
    known = {c.name for c in shader.constants}
    unknown = set(values) - known
    if unknown:
        raise VkharpError(f"{shader.name} has no constants {sorted(unknown)}; it has {sorted(known)}")
    out = np.zeros(len(shader.constants), dtype=np.uint32)
    for c in shader.constants:
        v = values.get(c.name, c.default)
        if c.type == "float":
            out[c.id] = np.array([v], dtype=np.float32).view(np.uint32)[0]
        elif c.type == "int":
            out[c.id] = np.array([v], dtype=np.int32).view(np.uint32)[0]
        else:
            if int(v) < 0:
                raise VkharpError(f"{shader.name}: constant {c.name} must be non-negative, got {v}")
            out[c.id] = int(v)
    if shader.constants and shader.constants[0].name == "WG":  # convention: constant 0 = work-group size
        if out[0] > device.info.max_workgroup_invocations:
            raise DeviceLimitError(f"{shader.name}: work-group size {out[0]} exceeds the device's "
                                   f"{device.info.max_workgroup_invocations}")
    return out


def pack_push(shader: shaders.Shader, values: dict) -> np.ndarray:
    """Push constants by name → uint32 words in declaration order (floats as bits); missing = 0."""
    names = [n for _, n in shader.push]
    unknown = set(values) - set(names)
    if unknown:
        raise VkharpError(f"{shader.name} has no push constants {sorted(unknown)}; it has {names}")
    out = np.zeros(len(names), dtype=np.uint32)
    for i, (ctype, name) in enumerate(shader.push):
        v = values.get(name, 0)
        out[i] = (np.array([v], np.float32).view(np.uint32)[0] if ctype == "float"
                  else np.array([v], np.int32 if ctype == "int" else np.uint32).view(np.uint32)[0])
    return out


class Program:
    """A recorded sequence: `run()` replays it without re-recording."""

    def __init__(self, device: Device, seq, steps, algorithms, timestamps: bool):
        self.device, self.seq, self.steps, self._algorithms = device, seq, steps, algorithms
        self._timestamps = timestamps

    @property
    def n_dispatches(self) -> int:
        return sum(s.kind == "dispatch" for s in self.steps)

    @property
    def n_syncs(self) -> int:
        return sum(s.kind == "sync" for s in self.steps)

    def run(self) -> None:
        self.seq.eval()

    def step_times(self) -> list[tuple[RecordedStep, float]]:
        """Seconds per recorded step from Vulkan timestamps of the last run (needs timestamps=True)."""
        if not self._timestamps:
            raise VkharpError("this program was recorded without timestamps")
        ts = np.array(self.seq.get_timestamps(), dtype=np.float64) * self.device.info.timestamp_period_ns * 1e-9
        return list(zip(self.steps, np.diff(ts)))
