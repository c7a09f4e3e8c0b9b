"""User-facing errors: every failure a user can cause or fix says what is wrong and what to do.

describe(exc) is the one place that turns an exception into the line the CLI prints: VkharpError
as it is, OSError (permissions, a full disk, a missing file) and text that is not UTF-8 with what
to do about them; None for anything else (a bug: it keeps its traceback).
"""
from __future__ import annotations

import errno
import os


class VkharpError(Exception):
    """An error whose message is meant for the user as-is (the CLI prints it without a traceback)."""


class NoVulkanError(VkharpError):
    """No Vulkan loader, no device, or a driver that fails to start."""


class DeviceLimitError(VkharpError):
    """A request exceeds what the selected device supports."""


class ShaderBuildError(VkharpError):
    """A GLSL shader could not be compiled."""


class DamagedModelDir(VkharpError):
    """A converted directory fails its checks; `what` says what is wrong without the advice."""

    def __init__(self, path, what: str, advice: str):
        self.path, self.what = path, what
        super().__init__(f"{path}: {what}; {advice}")


class NonFiniteLogits(VkharpError):
    """The model computed NaN or infinite logits: damaged weights or an overflow, never end-of-text."""


_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def os_reason(exc: OSError, writing: bool = False) -> str:
    """What went wrong, in words, and what to do (without the path)."""
    code = exc.errno
    if code in _FULL:
        return "no space left on that disk (or quota); free some space or choose a place with more"
    if code == errno.EROFS:
        return "the file system is read-only; choose a writable place"
    if code in _DENIED:
        return "permission denied; " + ("choose a place you can write, or fix its permissions" if writing
                                        else "check its permissions")
    if code == errno.ENOENT:
        return "no such file or directory; check the path"
    if code == errno.ENOTDIR:
        return "a part of the path is a file, not a directory; check the path"
    if code == errno.EISDIR:
        return "it is a directory where a file was expected; check the path"
    return (exc.strerror or str(exc)) + "; check the path and the disk"


def _in_cache(path) -> bool:
    """path lies in vkharp's cache (converted models, SPIR-V), whose place VKHARP_CACHE sets."""
    from .convert import cache_root
    return _below(path, cache_root().parent)


def _below(path, parent) -> bool:
    try:
        return os.path.abspath(str(path)).startswith(os.path.abspath(str(parent)) + os.sep)
    except (TypeError, ValueError):
        return False


CACHE_HINT = "vkharp's cache: set VKHARP_CACHE to a writable directory with free space"


class WriteError(VkharpError):
    """Writing a result failed (read-only place, full disk); nothing partial was left behind."""

    def __init__(self, path, exc: OSError):
        self.path, self.exc = path, exc
        where = f"{path} ({CACHE_HINT})" if _in_cache(path) else str(path)
        super().__init__(f"cannot write {where}: {os_reason(exc, writing=True)}")

    @staticmethod
    def concerns(exc: OSError, *places) -> bool:
        """The OSError came from writing one of places or below it (or is a write-only kind of failure);
        else it came from reading the source, and the CLI names that file."""
        if exc.errno in _FULL or exc.errno == errno.EROFS:
            return True
        name = exc.filename
        return name is not None and any(os.path.abspath(str(name)) == os.path.abspath(str(p)) or _below(name, p)
                                        for p in places)


def describe(exc: BaseException) -> str | None:
    """The one line the CLI prints for exc, or None when exc is a bug (it keeps its traceback)."""
    if isinstance(exc, VkharpError):
        return str(exc)
    if isinstance(exc, UnicodeError):
        return f"text that is not valid UTF-8 ({exc}); vkharp reads and writes UTF-8"
    if isinstance(exc, OSError):
        name = exc.filename
        if name is None:
            return os_reason(exc)
        hint = f" ({CACHE_HINT})" if _in_cache(name) else ""
        other = f" → {exc.filename2}" if exc.filename2 else ""
        return f"{name}{other}{hint}: {os_reason(exc)}"
    if type(exc).__module__.startswith("jinja2"):
        return f"the chat template failed: {exc}"
    return None
