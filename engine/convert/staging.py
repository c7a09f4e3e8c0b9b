"""Temporary files and directories of a write in progress, and the removal of those a dead run left.

A conversion writes into DST.tmp-PID-XXXX next to DST and renames it into place when complete
(pipeline.py); --overwrite parks the old DST in DST.old-PID-XXXX until the new one is in place; the
verification stamp is written through .NAME.tmp-PID-XXXX. A run that is killed (SIGKILL, a power
cut) cannot remove them, so the next run does, but only what it can prove is ours and dead:

- the name has our pattern and a PID;
- a directory holds our marker file (MARKER: pid, host name, PID namespace), a file holds the same
  fields as JSON; the host and PID namespace are this machine's (a PID means nothing elsewhere);
- that PID no longer runs.

Anything else (a user's directory that happens to match the pattern, a live run's work, a run on
another machine sharing the disk) is left alone.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import tempfile
from pathlib import Path

MARKER = ".vkharp-partial"
_DIR_RE = re.compile(r"^.+\.(?:tmp|old)-(\d+)-[A-Za-z0-9_]+$")
_FILE_RE = re.compile(r"^\..+\.tmp-(\d+)-[A-Za-z0-9_]+$")


def _identity() -> dict:
    """Who is writing: this process on this host, in this PID namespace (containers have their own)."""
    try:
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        pidns = None
    return {"pid": os.getpid(), "host": socket.gethostname(), "pidns": pidns}


def _pid_gone(pid: int) -> bool:
    """True only when this PID certainly does not run here (POSIX kill 0; elsewhere never certain)."""
    if os.name != "posix" or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:       # EPERM: it runs, as another user
        return False
    return False


def _dead_writer(info) -> bool:
    me = _identity()
    return (isinstance(info, dict) and isinstance(info.get("pid"), int) and info.get("host") == me["host"]
            and info.get("pidns") == me["pidns"] and _pid_gone(info["pid"]))


def make_dir(parent: Path, name: str, kind: str = "tmp") -> Path:
    """A fresh NAME.KIND-PID-XXXX directory in parent, marked as ours (unmark it before publishing)."""
    d = Path(tempfile.mkdtemp(prefix=f"{name}.{kind}-{os.getpid()}-", dir=parent))
    try:
        (d / MARKER).write_text(json.dumps(_identity()))
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    return d


@contextlib.contextmanager
def signals_held():
    """Hold SIGINT and SIGTERM back (POSIX, main thread) for a few steps that must not be split."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def unmark(d: Path) -> None:
    (d / MARKER).unlink(missing_ok=True)


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write path through .NAME.tmp-PID-XXXX and a rename: readers see the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove_dead_leftovers(parent: Path) -> list[Path]:
    """Remove the temporaries in parent that a run now dead left behind (see the module's rules);
    returns what was removed. Errors (permissions, a race with another cleaner) are ignored."""
    removed = []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    for p in entries:
        try:
            if _DIR_RE.match(p.name) and p.is_dir() and not p.is_symlink():
                if _dead_writer(json.loads((p / MARKER).read_text())):
                    shutil.rmtree(p)
                    removed.append(p)
            elif _FILE_RE.match(p.name) and p.is_file() and not p.is_symlink() and p.stat().st_size < 65536:
                if _dead_writer(json.loads(p.read_text()).get("writer")):
                    p.unlink()
                    removed.append(p)
        except (OSError, ValueError, AttributeError):
            continue
    return removed


def writer_identity() -> dict:
    """The fields a small atomically written JSON file carries as "writer" (so leftovers are provable)."""
    return _identity()


def is_leftover_name(name: str) -> bool:
    """A name this module gives temporaries (a model directory may hold such a stamp leftover)."""
    return bool(_FILE_RE.match(name))
