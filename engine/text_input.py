"""Text from the user (argv, stdin, the chat's lines): UTF-8, or one error that says where it is not.

Python decodes argv with surrogateescape, so invalid bytes in `-p` arrive as lone surrogates that
only fail later, deep in the tokenizer; stdin in text mode raises UnicodeDecodeError mid-read. Both
are checked here, once, where the text comes in.
"""
from __future__ import annotations

import sys

from .errors import VkharpError

_ADVICE = "vkharp reads UTF-8 text (convert it first, e.g. with iconv)"


def decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VkharpError(f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          f"{_ADVICE}") from None


def check(text: str, what: str) -> str:
    """text, when it is valid Unicode (no lone surrogates from undecodable argv bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        ch = ord(text[exc.start])
        byte = f"byte 0x{ch - 0xDC00:02x}" if 0xDC80 <= ch <= 0xDCFF else f"U+{ch:04X}"
        raise VkharpError(f"{what} is not UTF-8 text ({byte} at character {exc.start}); {_ADVICE}") from None
    return text


def read_all(stream=None, what: str = "stdin") -> str:
    stream = stream or sys.stdin
    buf = getattr(stream, "buffer", None)
    return decode(buf.read(), what) if buf is not None else check(stream.read(), what)


def read_line(stream=None, what: str = "stdin") -> str:
    """One line ('' at EOF)."""
    stream = stream or sys.stdin
    buf = getattr(stream, "buffer", None)
    return decode(buf.readline(), what) if buf is not None else check(stream.readline(), what)
