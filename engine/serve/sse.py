"""Server-sent events framing, as OpenAI clients parse it: `data: {json}` and a blank line per
event, and `data: [DONE]` (with its blank line) at the end. An error after the stream began cannot
change the status any more: it goes out as one `data: {"error": ...}` event before [DONE], as
llama-server does."""
from __future__ import annotations

import json

MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}   # no proxy buffering of the stream
DONE = b"data: [DONE]\n\n"


def event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, allow_nan=False).encode() + b"\n\n"
