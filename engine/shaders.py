"""Shader variants as data: find, compile (glslangValidator → SPIR-V, cached) and describe them.

Every `shaders/*.comp` declares its variants in header lines:

    // @variant matvec_q4_1  WFMT=4 BIAS=0

(a file with none is one variant named after the file). The compiled module's interface is read
from the preprocessed source, so the host never repeats what the shader already says:
- bindings `layout(binding = N) [readonly|writeonly] buffer`, or a texel buffer (`uniform [readonly] uimageBuffer`,
  `uniform usamplerBuffer`: kp binds those as texel buffers, tools/kp/patches/0008) → buffer order and access (r, w, rw),
  which the recorder uses to place synchronisation;
- `layout(constant_id = N) const TYPE NAME = DEFAULT;` → specialization constants by name.
  kp passes spec constants by position, so IDs must run 0..N-1; ID 0 is the work-group size
  (`layout(local_size_x_id = 0) in;`) by convention.
- `layout(push_constant) uniform P { uint a; float b; } pc;` → push constants by name, 4 bytes
  each. They are the one value kp lets differ between dispatches of the *same* pipeline (set per
  OpAlgoDispatch), which is how one pipeline serves every layer (e.g. a layer's offset into a
  buffer that stacks all layers' weights): pipelines are costly to create.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import ShaderBuildError

SHADER_DIR = Path(os.environ.get("VKHARP_SHADER_DIR", Path(__file__).resolve().parent.parent / "shaders"))
TARGET_ENV = "vulkan1.1"

_VARIANT_RE = re.compile(r"^//\s*@variant\s+(\w+)((?:\s+\w+=\S+)*)\s*$", re.M)
# `// @also SUFFIX DEF=VAL ... [unless DEF]`: every variant of the file (but those defining DEF) again,
# named with SUFFIX and the extra defines (the matrix kernels' texel-buffer twins: _tx TEXEL=1).
_ALSO_RE = re.compile(r"^//\s*@also\s+(\w+)((?:\s+\w+=\S+)+)(?:\s+unless\s+(\w+))?\s*$", re.M)
_BINDING_RE = re.compile(
    r"layout\s*\(([^)]*\bbinding\s*=\s*(\d+)[^)]*)\)\s*(?:uniform\s+)?"
    r"((?:(?:readonly|writeonly|restrict|coherent|volatile)\s+)*)(buffer|[iu]?imageBuffer|[iu]?samplerBuffer)\s+(\w+)")
_PUSH_RE = re.compile(r"layout\s*\(\s*push_constant\s*\)\s*uniform\s+\w+\s*\{([^}]*)\}")
_MEMBER_RE = re.compile(r"\b(uint|int|float)\s+(\w+)\s*;")
_CONST_RE = re.compile(r"layout\s*\(\s*constant_id\s*=\s*(\d+)\s*\)\s*const\s+(uint|int|float|bool)\s+(\w+)\s*=\s*([^;]+);")


@dataclass(frozen=True)
class Binding:
    index: int
    name: str
    access: str  # "r", "w" or "rw"


@dataclass(frozen=True)
class Constant:
    id: int
    type: str
    name: str
    default: float | int | bool


@dataclass(frozen=True)
class Shader:
    """One compiled variant: SPIR-V plus the interface the host needs."""
    name: str
    source: Path
    defines: tuple
    spirv: bytes
    bindings: tuple[Binding, ...]
    constants: tuple[Constant, ...]
    push: tuple[tuple[str, str], ...] = ()   # (type, name) of each 4-byte push constant, in order

    def constant(self, name: str) -> Constant:
        for c in self.constants:
            if c.name == name:
                return c
        raise KeyError(name)


def _glslang() -> str:
    exe = shutil.which("glslangValidator")
    if not exe:
        raise ShaderBuildError("glslangValidator was not found: install it with `apt-get install glslang-tools` "
                               "(macOS: `brew install glslang`; Windows: the Vulkan SDK).")
    return exe


@lru_cache(maxsize=None)
def variants() -> dict[str, tuple[Path, tuple]]:
    """All declared variants: name -> (source file, ((DEFINE, value), ...))."""
    out: dict[str, tuple[Path, tuple]] = {}
    for path in sorted(SHADER_DIR.glob("*.comp")):
        text = path.read_text()
        found = _VARIANT_RE.findall(text)
        if not found:
            found = [(path.stem, "")]
        for suffix, extra, unless in _ALSO_RE.findall(text):
            found += [(name + suffix, defs + extra) for name, defs in list(found)
                      if not (unless and re.search(rf"\b{unless}=", defs))]
        for name, defs in found:
            if name in out:
                raise ShaderBuildError(f"shader variant {name!r} is declared twice ({out[name][0].name}, {path.name})")
            out[name] = (path, tuple(tuple(d.split("=", 1)) for d in defs.split()))
    return out


def _cache_dir() -> Path:
    root = os.environ.get("VKHARP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vkharp")
    d = Path(root) / "spirv"
    d.mkdir(parents=True, exist_ok=True)
    return d


@lru_cache(maxsize=None)
def _include_digest() -> str:
    h = hashlib.sha256()
    for p in sorted((SHADER_DIR / "include").glob("*")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ShaderBuildError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def _parse_value(ctype: str, text: str):
    text = text.strip().rstrip("uUfF")
    if ctype == "bool":
        return text == "true"
    if ctype == "float":
        return float(text)
    return int(text, 0)


def parse_push(preprocessed: str) -> tuple[tuple[str, str], ...]:
    m = _PUSH_RE.search(preprocessed)
    return tuple(_MEMBER_RE.findall(m.group(1))) if m else ()


def parse_interface(preprocessed: str) -> tuple[tuple[Binding, ...], tuple[Constant, ...]]:
    bindings = []
    for m in _BINDING_RE.finditer(preprocessed):
        quals, kind = m.group(3).split(), m.group(4)
        access = "r" if "readonly" in quals or kind.endswith("samplerBuffer") else "w" if "writeonly" in quals else "rw"
        bindings.append(Binding(int(m.group(2)), m.group(5), access))
    bindings.sort(key=lambda b: b.index)
    if [b.index for b in bindings] != list(range(len(bindings))):
        raise ShaderBuildError(f"bindings must be numbered 0..N-1, got {[b.index for b in bindings]}")
    consts = sorted((Constant(int(i), t, n, _parse_value(t, v)) for i, t, n, v in _CONST_RE.findall(preprocessed)),
                    key=lambda c: c.id)
    if [c.id for c in consts] != list(range(len(consts))):
        raise ShaderBuildError(f"constant_ids must be numbered 0..N-1 (kp passes them by position), "
                               f"got {[c.id for c in consts]}")
    return tuple(bindings), tuple(consts)


@lru_cache(maxsize=None)
def get(name: str) -> Shader:
    """Compile (or load from cache) the variant called `name`."""
    table = variants()
    if name not in table:
        raise ShaderBuildError(f"unknown shader variant {name!r}; known: {', '.join(sorted(table))}")
    path, defines = table[name]
    source = path.read_text()
    key = hashlib.sha256(
        "\0".join([source, _include_digest(), repr(defines), TARGET_ENV, "v2"]).encode()).hexdigest()[:32]
    cache = _cache_dir()
    spv_path, meta_path = cache / f"{name}-{key}.spv", cache / f"{name}-{key}.json"
    if spv_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        bindings = tuple(Binding(*b) for b in meta["bindings"])
        consts = tuple(Constant(*c) for c in meta["constants"])
        push = tuple(tuple(p) for p in meta["push"])
        return Shader(name, path, defines, spv_path.read_bytes(), bindings, consts, push)
    exe = _glslang()
    dflags = [f"-D{k}={v}" for k, v in defines]
    inc = f"-I{SHADER_DIR / 'include'}"
    pre = _run([exe, "-E", "-S", "comp", inc, *dflags, str(path)])
    bindings, consts = parse_interface(pre)
    push = parse_push(pre)
    tmp = spv_path.with_suffix(f".tmp{os.getpid()}")
    _run([exe, "-V", "--target-env", TARGET_ENV, "-S", "comp", inc, *dflags, "-o", str(tmp), str(path)])
    os.replace(tmp, spv_path)
    meta_tmp = meta_path.with_suffix(f".tmp{os.getpid()}")
    meta_tmp.write_text(json.dumps({"bindings": [list(b.__dict__.values()) for b in bindings],
                                    "constants": [list(c.__dict__.values()) for c in consts],
                                    "push": [list(p) for p in push]}))
    os.replace(meta_tmp, meta_path)
    return Shader(name, path, defines, spv_path.read_bytes(), bindings, consts, push)
