"""Checksums of a converted directory: verified once, then trusted through a stamp.

Hashing every weight file on every load would cost a full read of the model. So after the
checksums match (or right after a conversion, which hashes what it writes), STAMP records the
size, mtime and ctime of every file the manifest lists, and the manifest's own; a load whose files
all still match the stamp skips the hashes. Any change to a file (flipped bytes, a rewrite, a touch
that restores the mtime still moves the ctime) makes the next load hash everything again. A mismatch
names the damaged tensors (the manifest keeps a sha256 per tensor) and says how to reconvert.

The stamp is written atomically; a directory where it cannot be written (read-only) is verified
once per process (the states it verified are also kept in memory).
"""
from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import numpy as np

from ..errors import DamagedModelDir, VkharpError
from . import staging
from .format import MANIFEST, arrays_for
from .safetensors_io import read_header, sha256_file

STAMP = "verified.json"
_STAMP_FORMAT = "vkharp-verified"


def _states(path: Path, names) -> dict:
    out = {}
    for name in sorted(set(names) | {MANIFEST}):
        st = (path / name).stat()
        out[name] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return out


_verified_here: set = set()      # (directory, its files' states) this process verified


def _key(path: Path, states: dict):
    return str(path.resolve()), json.dumps(states, sort_keys=True)


def stamp_is_current(path: Path, manifest: dict) -> bool:
    try:
        states = _states(path, manifest["files"])
        if _key(path, states) in _verified_here:
            return True
        stamp = json.loads((path / STAMP).read_text())
        return stamp.get("format") == _STAMP_FORMAT and stamp.get("files") == states
    except (OSError, ValueError, AttributeError):
        return False


def write_stamp(path: Path, manifest: dict) -> bool:
    """Record that the files as they are now match their checksums; False when it cannot be written."""
    try:
        states = _states(path, manifest["files"])
        _verified_here.add(_key(path, states))
        data = {"format": _STAMP_FORMAT, "files": states, "writer": staging.writer_identity()}
        staging.write_file_atomic(path / STAMP, (json.dumps(data, indent=1) + "\n").encode())
        return True
    except OSError:
        return False


def tensor_digest(arrays) -> str:
    """sha256 of one tensor's arrays, in file order (what the manifest's per-tensor "sha256" holds)."""
    h = hashlib.sha256()
    for arr in arrays:
        h.update(memoryview(np.ascontiguousarray(arr).reshape(-1).view(np.uint8)))
    return h.hexdigest()


def reconvert_hint(path: Path, manifest: dict) -> str:
    """The command that rebuilds this directory when its source still exists, else the general advice."""
    src = (manifest.get("source") or {}).get("path")
    if src and Path(src).exists():
        dtype = manifest.get("dtype")
        cmd = ["vkharp", "convert", src, str(path), "--overwrite"] + (["--dtype", dtype] if dtype not in (None, "auto") else [])
        return f"reconvert it from its source: {shlex.join(cmd)}"
    return "reconvert it from the original checkpoint with `vkharp convert SRC DST --overwrite`"


def _damaged_tensors(path: Path, fname: str, manifest: dict) -> list[str] | None:
    """The tensors of fname whose bytes differ from their checksums; None when the file's table itself
    is unreadable or the manifest predates per-tensor checksums."""
    mine = {n: i for n, i in manifest.get("tensors", {}).items() if i.get("file") == fname}
    if not mine or any("sha256" not in i for i in mine.values()):
        return None
    try:
        entries = read_header(path / fname)[0]
    except VkharpError:
        return None
    bad = []
    with open(path / fname, "rb") as f:
        for name, info in mine.items():
            keys = [k for k, _, _ in arrays_for(name, info["format"], tuple(info["shape"]))]
            if any(k not in entries for k in keys):
                bad.append(name)
                continue
            h = hashlib.sha256()
            for k in keys:
                e = entries[k]
                f.seek(e.begin)
                for at in range(e.begin, e.end, 1 << 24):
                    h.update(f.read(min(1 << 24, e.end - at)))
            if h.hexdigest() != info["sha256"]:
                bad.append(name)
    return bad


def check_checksums(path: Path, manifest: dict) -> None:
    """Hash every listed file; a mismatch raises one VkharpError naming the file and its damaged tensors."""
    for name, digest in manifest.get("files", {}).items():
        if sha256_file(path / name) == digest:
            continue
        what = f"{name} is corrupt (sha256 mismatch)"
        if name.endswith(".safetensors"):
            bad = _damaged_tensors(path, name, manifest)
            if bad:
                more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
                what += f": tensor{'s' * (len(bad) > 1)} {', '.join(bad[:4])}{more} differ{'s' * (len(bad) == 1)} " \
                        f"from what was converted"
            elif bad is not None:
                what += ": its header differs from what was converted"
        raise DamagedModelDir(path, what, reconvert_hint(path, manifest))


def verify(path: Path, manifest: dict, once: bool = True) -> None:
    """Check the checksums (skipped when once and the stamp is current), then stamp the directory."""
    path = Path(path)
    if once and stamp_is_current(path, manifest):
        return
    check_checksums(path, manifest)
    write_stamp(path, manifest)

