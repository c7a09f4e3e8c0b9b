"""The only module that imports kp: device selection, buffers, and recorded programs.

Synchronisation. Stock kp records, before each dispatch, a barrier from *transfer writes* to shader
reads on that dispatch's buffers, and nothing from compute to compute, so two dependent dispatches
recorded back to back are not ordered by the Vulkan spec. vkharp builds kp with a small patch set
(tools/kp/patches): a Python `OpMemoryBarrier` whose empty tensor list records one global
`VkMemoryBarrier`, and a switch that turns kp's per-tensor transfer barriers off. The `Recorder`
below then orders every program itself, by one rule:

* Every recorded operation (dispatch, upload = staging→device copy, download = device→staging copy)
  has a set of buffers it reads and a set it writes (from the shader's `readonly`/`writeonly`
  bindings; copies read or write the whole buffer). The recorder remembers what was read and
  written since the last barrier. Before an operation that reads or writes a buffer written since
  then (read-after-write, write-after-write), or writes one read since then (write-after-read), it
  records **one global memory barrier**: compute and transfer writes → compute and transfer reads
  and writes. A global barrier covers every buffer, so both sets start empty again.
* Every program starts with the same barrier, which orders it after everything submitted earlier
  on the queue (the previous token's reads of the parameters it is about to overwrite, the copies of
  the previous download). Host writes to mapped staging memory before a submission are visible to
  it by the rules of `vkQueueSubmit`; a download ends with kp's transfer→host barrier and the host
  reads after the fence.
* Independent dispatches recorded inside `parallel()` share one barrier (weight parts).

The Khronos validation layer with synchronization validation checks this on every program the
tests record (tests/test_validation.py); tests/test_barriers.py replays long dependent chains.
"""
from __future__ import annotations

import contextlib
import os
import weakref
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


# VkAccessFlagBits / VkPipelineStageFlagBits (vulkan_core.h)
ACCESS_SHADER_READ, ACCESS_SHADER_WRITE = 0x20, 0x40
ACCESS_TRANSFER_READ, ACCESS_TRANSFER_WRITE = 0x800, 0x1000
STAGE_COMPUTE, STAGE_TRANSFER = 0x800, 0x1000
_BARRIER_MASKS = (ACCESS_SHADER_WRITE | ACCESS_TRANSFER_WRITE,
                  ACCESS_SHADER_READ | ACCESS_SHADER_WRITE | ACCESS_TRANSFER_READ | ACCESS_TRANSFER_WRITE,
                  STAGE_COMPUTE | STAGE_TRANSFER, STAGE_COMPUTE | STAGE_TRANSFER)

# What each patch of tools/kp/patches makes visible in the built module.
KP_PATCH_MARKERS = {
    # 0001 (setup.py's PYTHON_EXECUTABLE) leaves no mark of its own: it is in every build that
    # tools/kp/build.sh made, which 0002's version tells.
    "0001/0002 built by tools/kp/build.sh (version +vkharp.N)": lambda kp: "+vkharp." in getattr(kp, "__version__", ""),
    "0003 no built-in debug layers": lambda kp: getattr(kp, "builtin_debug_layers", True) is False,
    "0004 portability enumeration": lambda kp: bool(getattr(kp, "portability_enumeration", False)),
    "0005 OpMemoryBarrier binding": lambda kp: hasattr(kp, "OpMemoryBarrier"),
    "0006 optional dispatch barriers": lambda kp: hasattr(kp, "set_dispatch_transfer_barriers"),
    "0007 storage tensors take copies": lambda kp: bool(getattr(kp, "storage_tensor_copies", False)),
    "0008 texel-buffer bindings": lambda kp: bool(getattr(kp, "texel_buffers", False)),
}
REBUILD_HINT = ("rebuild it with vkharp's patches: `tools/kp/build.sh .venv/bin/python` "
                "(or delete .venv and run ./vkharp)")


def kp_patches() -> dict[str, bool]:
    """Which of vkharp's kp patches the importable kp carries (empty when kp is missing)."""
    if _kp is None:
        return {}
    return {name: bool(test(_kp)) for name, test in KP_PATCH_MARKERS.items()}


def _require_patched_kp():
    kp = _require_kp()
    missing = [name for name, ok in kp_patches().items() if not ok]
    if missing:
        raise NoVulkanError(f"kp {getattr(kp, '__version__', '?')} is a build without vkharp's patches "
                            f"(missing: {'; '.join(missing)}), so programs cannot be ordered by real barriers; "
                            f"{REBUILD_HINT}")
    return kp


def global_barrier():
    """One global memory barrier: compute/transfer writes before → compute/transfer access after."""
    return _require_kp().OpMemoryBarrier([], *_BARRIER_MASKS)


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


PROFILES = ("cpu", "gpu")


def apply_profile(info: DeviceInfo, profile: str | None = None) -> DeviceInfo:
    """VKHARP_DEVICE_PROFILE=gpu|cpu: make the engine take the code paths of that kind of device.

    lavapipe reports a CPU, so without this the GPU branches (the GPU matmul tiling, weights uploaded
    to device-local memory through staging buffers) would never run in tests. "gpu" makes the device
    a discrete GPU for those choices; the real limits (subgroup size, shared memory) stay, so the GPU
    tilings must hold on them too."""
    profile = (profile if profile is not None else os.environ.get("VKHARP_DEVICE_PROFILE", "")).strip().lower()
    if not profile:
        return info
    if profile not in PROFILES:
        raise VkharpError(f"VKHARP_DEVICE_PROFILE={profile!r} is not one of {', '.join(PROFILES)}")
    kind = "discrete" if profile == "gpu" else "cpu"
    if kind == info.type:
        return info
    return replace(info, type=kind, extras={**info.extras, "profile": profile, "reported_type": info.type})


class Buffer:
    """One Vulkan buffer of 4-byte elements (f32, u32 or i32).

    kind:
      "act"   device-local + host staging copy: activations and outputs. Can be uploaded and read
              back (a program downloads what the host reads, once, at its end).
      "const" read-only data written once (weights): host-visible on unified-memory devices (no
              second copy), device-local otherwise (uploaded through a temporary staging buffer).
      "store" device-local, no host copy (KV cache): written and read by shaders only.
      "param" one host-visible, coherent buffer that shaders read directly: the few words the host
              writes before each replay (step parameters, token ids, sampler words). No copy is
              recorded for them; host writes before a submission are visible to it.
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
        if self.kind == "const" and not self.device.info.unified_memory:
            # device-local, no host mapping (its data() would be unmapped memory): copy it back
            kp = _require_kp()
            host = self.device.mgr.tensor_t(np.zeros(self.size, self.dtype), kp.TensorTypes.host)
            self.device._eval_once([kp.OpTensorCopy([self.tensor, host])])
            out = np.array(host.data(), copy=True).view(self.dtype)
            host.destroy()
            return out
        return np.array(self.tensor.data(), copy=True).view(self.dtype)

    def write(self, data) -> None:
        """Replace the buffer's contents from the host (outside any recorded program)."""
        arr = np.ascontiguousarray(data).reshape(-1)
        if arr.size != self.size or arr.dtype.itemsize != 4:
            raise VkharpError(f"buffer {self.name!r} holds {self.size} 4-byte elements; got {arr.size} of {arr.dtype}")
        if self.kind not in ("act", "param"):
            raise VkharpError(f"buffer {self.name!r} (kind {self.kind!r}) cannot be rewritten from the host")
        self.host_view()[:] = arr.view(self.dtype)
        if self.kind == "act":
            self.device._eval_once([_require_kp().OpTensorSyncDevice([self.tensor])])

    def host_view(self) -> np.ndarray:
        """The mapped host memory: the staging copy of an act buffer (upload or download it in a
        program), or a param buffer itself."""
        return self.tensor.data().view(self.dtype)

    def __repr__(self):
        return f"Buffer({self.name!r}, {_DTYPES[np.dtype(self.dtype)]}[{self.size}], {self.kind})"


class Device:
    """A Vulkan device opened through kp, with the limits the engine relies on.

    `max_buffer_bytes` lowers the per-buffer limit (tests use it to force tensor splitting).
    """

    def __init__(self, index: int | None = None, *, max_buffer_bytes: int | None = None):
        kp = _require_patched_kp()
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
        info = apply_profile(info)
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
        # The Recorder orders everything itself (one global barrier per dependency); kp's
        # per-tensor transfer barriers before each dispatch would only add cost.
        kp.set_dispatch_transfer_barriers(False)
        self._algorithms: dict = {}
        self.allocated_bytes = 0   # buffers made here (weights, KV cache, activations): device memory used
        self._algorithm_buffers: dict = {}

    # -- buffers -------------------------------------------------------------------------------
    @property
    def max_buffer_bytes(self) -> int:
        return self.info.max_storage_buffer_range

    def texel_view_fits(self, buf: "Buffer", texel_bytes: int = 16) -> bool:
        """Whether one texel-buffer view of `buf` (texels of texel_bytes) fits maxTexelBufferElements
        (the `_tx` kernels bind whole buffers as texel buffers, tools/kp/patches/0008)."""
        return buf.size * 4 // texel_bytes <= self.info.max_texel_elements

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
        if kind == "param":
            tensor = self.mgr.tensor_t(data, kp.TensorTypes.host)
            return Buffer(self, tensor, np.dtype(dtype), data.size, kind, name, shape)
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
        """Run a few copies now, ordered after everything submitted before (see the module doc)."""
        seq = self.mgr.sequence()
        seq.record(global_barrier())
        for op in ops:
            seq.record(op)
        seq.eval()

    def algorithm(self, shader: shaders.Shader, buffers: list[Buffer], groups, spec: np.ndarray, n_push: int):
        """The kp Algorithm (one Vulkan pipeline) for these bindings and constants, created once.

        Creating a pipeline compiles the shader (on lavapipe: LLVM, ~0.1-3 s), so identical requests
        reuse it: layers that share buffers differ only in push constants. An entry lasts as long as
        its buffers: when one is freed the entry goes (programs that use the algorithm keep it), so
        a long-lived device does not hold every buffer it ever bound, and an id is never reused
        while a key names it."""
        key = (shader.name, tuple(id(b) for b in buffers), tuple(groups), spec.tobytes(), n_push)
        algo = self._algorithms.get(key)
        if algo is None:
            algo = self.mgr.algorithm([b.tensor for b in buffers], shader.spirv, groups, spec,
                                      np.zeros(n_push, dtype=np.uint32))
            self._algorithms[key] = algo
            me = weakref.ref(self)

            def forget(_, key=key):
                dev = me()
                if dev is not None:
                    dev._algorithms.pop(key, None)
                    dev._algorithm_buffers.pop(key, None)
            self._algorithm_buffers[key] = [weakref.ref(b, forget) for b in buffers]
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
    kind: str       # "dispatch", "barrier", "upload", "download"
    label: str


class Recorder:
    """Records operations into one kp Sequence, with the barriers the spec requires (module doc)."""

    def __init__(self, device: Device, *, timestamps: bool = False, name: str = "",
                 _unsafe_no_barriers: bool = False):
        kp = _require_kp()
        self.device, self.name = device, name
        self._ops: list = []
        self.steps: list[RecordedStep] = []
        self._written: set[int] = set()       # id(buffer) written since the last barrier
        self._read: set[int] = set()          # id(buffer) read since the last barrier
        self._buffers: dict[int, Buffer] = {}
        self._group: list | None = None       # pending (reads, writes) inside parallel()
        self._timestamps = timestamps
        self._kp = kp
        self._no_barriers = _unsafe_no_barriers   # tests only: proves the validation gate sees races
        self._downloads: list[Buffer] = []        # copied to host staging at the end (finish)
        self.algorithms: list = []
        self._barrier("(program start)")

    def upload(self, *bufs: Buffer):
        """Copy buffers from their host staging copies (written with host_view()) at this point."""
        for b in bufs:
            self._need_act(b, "uploaded inside a program")
        self._order(set(), {id(b) for b in bufs}, bufs)
        self._ops.append(self._kp.OpTensorSyncDevice([b.tensor for b in bufs]))
        self.steps.append(RecordedStep("upload", ",".join(b.name for b in bufs)))
        self._written |= {id(b) for b in bufs}

    def download(self, *bufs: Buffer):
        """Copy buffers to their host staging copies when the program ends (read them with host_view()
        after run()). All downloads of a program are one copy operation at its end, after its last
        write; a buffer must not be written after it is marked for download."""
        for b in bufs:
            self._need_act(b, "read back")
            if all(b is not d for d in self._downloads):
                self._downloads.append(b)

    @contextlib.contextmanager
    def parallel(self):
        """Dispatches inside are independent of each other (disjoint writes, no reads of each other's
        writes): they are checked against the state before the block and need no barrier among them."""
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
                self._written |= writes

    def dispatch(self, shader_name: str, buffers: list[Buffer], groups, consts: dict | None = None,
                 push: dict | None = None):
        """Record one dispatch of a shader variant over `buffers` (in binding order).

        `consts` are specialization constants (fixed per pipeline); `push` are push constants (set per
        dispatch). Dispatches with the same shader, buffers, grid and constants share one pipeline.
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
        reads = {id(b) for b, bd in zip(buffers, shader.bindings) if "r" in bd.access}
        writes = {id(b) for b, bd in zip(buffers, shader.bindings) if "w" in bd.access}
        for b in buffers:
            if b.kind in ("const", "param") and id(b) in writes:
                raise VkharpError(f"{shader_name} writes read-only buffer {b.name!r} (kind {b.kind!r})")
            if id(b) in writes and any(b is d for d in self._downloads):
                raise VkharpError(f"{shader_name} writes {b.name!r}, already marked for download at the end of "
                                  f"the program; record its writes first")
        if self._group is not None:
            # Inside parallel(): writes to one buffer from several dispatches are allowed (they must be
            # disjoint, e.g. weight parts); reading what the block writes, or writing what it reads, is not.
            # A buffer a dispatch both reads and writes (an in-place epilogue) is its own region too.
            g_reads = set().union(*(r - w for r, w in self._group)) if self._group else set()
            g_writes = set().union(*(w for _, w in self._group)) if self._group else set()
            if (reads - writes) & g_writes or writes & g_reads:
                raise VkharpError(f"{shader_name} inside parallel() depends on work recorded in the same "
                                  f"block; record it after the block")
        push_words = pack_push(shader, push or {})
        algo = self.device.algorithm(shader, buffers, groups, spec, push_words.size)
        self._order(reads, writes, buffers)   # dependencies on work before a parallel block, as usual
        self.algorithms.append(algo)
        self._ops.append(self._kp.OpAlgoDispatch(algo, push_words) if push_words.size
                         else self._kp.OpAlgoDispatch(algo))
        self.steps.append(RecordedStep("dispatch", shader_name))
        if self._group is not None:
            self._group.append((reads, writes))
        else:
            self._read |= reads
            self._written |= writes

    def _order(self, reads: set[int], writes: set[int], buffers) -> None:
        """The rule of the module doc: one global barrier before a hazard on any buffer."""
        for b in buffers:
            self._buffers[id(b)] = b
        hazard = ((reads | writes) & self._written) | (writes & self._read)
        if hazard:
            self._barrier(",".join(sorted(self._buffers[i].name or "?" for i in hazard)))

    def _barrier(self, label: str) -> None:
        self._written, self._read = set(), set()
        if self._no_barriers:
            return
        self._ops.append(global_barrier())
        self.steps.append(RecordedStep("barrier", label))

    def _need_act(self, b: Buffer, why: str):
        if b.kind != "act":
            raise VkharpError(f"buffer {b.name!r} of kind {b.kind!r} cannot be {why}; use an 'act' buffer")

    def fork(self) -> "Recorder":
        """A copy to extend differently (e.g. with or without a download): the recorded dispatches and
        their pipelines are shared, nothing is recorded twice."""
        other = Recorder.__new__(Recorder)
        other.__dict__.update(self.__dict__)
        other._ops, other.steps, other.algorithms = list(self._ops), list(self.steps), list(self.algorithms)
        other._written, other._read, other._buffers = set(self._written), set(self._read), dict(self._buffers)
        other._downloads = list(self._downloads)
        return other

    def finish(self) -> "Program":
        """The recorded program; this recorder is left as it was (it can be extended or forked again)."""
        rec = self
        if self._downloads:   # one copy of everything the host reads, ordered after its last write
            rec = self.fork()
            bufs, rec._downloads = rec._downloads, []
            rec._order({id(b) for b in bufs}, set(), bufs)
            rec._ops.append(self._kp.OpTensorSyncLocal([b.tensor for b in bufs]))
            rec.steps.append(RecordedStep("download", ",".join(b.name for b in bufs)))
        seq = self.device.mgr.sequence(0, len(rec._ops) + 1 if self._timestamps else 0)
        for op in rec._ops:
            seq.record(op)
        return Program(self.device, seq, rec.steps, rec.algorithms, self._timestamps)


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
    def n_barriers(self) -> int:
        return sum(s.kind == "barrier" for s in self.steps)

    @property
    def n_copies(self) -> int:
        """Buffers copied between device and host staging memory per run (uploads + downloads)."""
        return sum(len(s.label.split(",")) for s in self.steps if s.kind in ("upload", "download"))

    def run(self) -> None:
        self.seq.eval()

    def step_times(self) -> list[tuple[RecordedStep, float]]:
        """Seconds per recorded step from Vulkan timestamps of the last run (needs timestamps=True)."""
        if not self._timestamps:
            raise VkharpError("this program was recorded without timestamps")
        ts = np.array(self.seq.get_timestamps(), dtype=np.float64) * self.device.info.timestamp_period_ns * 1e-9
        return list(zip(self.steps, np.diff(ts)))
