"""The requests the server takes: their schemas (pydantic, strict types, unknown fields refused) and
how their fields map onto GenerationSettings.

Fields, by where they come from:
  OpenAI     temperature, top_p, max_tokens / max_completion_tokens, stop, seed, stream,
             stream_options.include_usage, logprobs / top_logprobs, n (1 only), presence_penalty and
             frequency_penalty (0 only: they are additive and vkharp's penalty is llama.cpp's
             multiplicative one, so they do not map cleanly: use repeat_penalty)
  llama.cpp  top_k, min_p, repeat_penalty, repeat_last_n, dynatemp_range, dynatemp_exponent
  vkharp     top_t (= min_p), temp_rule, edt_theta, edt_n, harp, harp_theta, harp_delta, harp_beta,
             harp_seed, rollback, rollback_risk, rollback_window, rollback_entropy_rise,
             rollback_pmax_ratio, rollback_baseline, rollback_retries, rollback_max, token_data
             (per-token entropy / HARP / rollback data in the answer)
  accepted and ignored (clients send them by default): model (one model is served), user, metadata,
             store, service_tier, parallel_tool_calls, logit_bias when empty, response_format
             {"type": "text"}, tools when empty, tool_choice "none"/"auto" without tools, name on a message
Anything else is a 400 that names the field. Values are checked by GenerationSettings, whose
messages name the setting.
"""
from __future__ import annotations

import json
import math
import secrets
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import VkharpError
from ..settings import GenerationSettings
from .errors import bad_request

MAX_STOP = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None       # OpenAI's; nothing to obfuscate here: ignored


class ResponseFormat(_Strict):
    type: Literal["text"]


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None                       # ignored: templates have no place for it
    refusal: str | None = None                    # an assistant message echoed back by a client

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class _Generation(_Strict):
    """What chat and completion requests share: sampling, stopping and our extensions."""
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # llama.cpp's
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    dynatemp_range: float | None = None
    dynatemp_exponent: float | None = None
    # vkharp's
    top_t: float | None = None
    temp_rule: str | None = None
    edt_theta: float | None = None
    edt_n: float | None = None
    harp: str | None = None
    harp_theta: float | None = None
    harp_delta: float | None = None
    harp_beta: float | None = None
    harp_seed: int | None = None
    rollback: bool | None = None
    rollback_risk: float | None = None
    rollback_window: int | None = None
    rollback_entropy_rise: float | None = None
    rollback_pmax_ratio: float | None = None
    rollback_baseline: int | None = None
    rollback_retries: int | None = None
    rollback_max: int | None = None
    token_data: bool = False


class ChatRequest(_Generation):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[Any] | None = None
    tool_choice: Literal["none", "auto"] | None = None
    parallel_tool_calls: bool | None = None


class CompletionRequest(_Generation):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = None        # the legacy API: how many top tokens (0 = the sampled one's only)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


class EmbeddingRequest(_Strict):
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"   # the openai client asks for base64
    dimensions: int | None = None                            # only the model's own width
    user: str | None = None
    pooling: str | None = None                               # last | mean | prompteol (engine/embed)


class TokenizeRequest(_Strict):
    content: str
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = False


class DetokenizeRequest(_Strict):
    tokens: list[int]


# request field -> GenerationSettings field, where the names differ
_RENAMED = {"repeat_last_n": "repeat_window", "top_t": "min_p"}
_SETTINGS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repeat_last_n", "dynatemp_range",
             "dynatemp_exponent", "top_t", "temp_rule", "edt_theta", "edt_n", "harp", "harp_theta", "harp_delta",
             "harp_beta", "harp_seed", "rollback", "rollback_risk", "rollback_window", "rollback_entropy_rise",
             "rollback_pmax_ratio", "rollback_baseline", "rollback_retries", "rollback_max")


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def parse(schema: type[BaseModel], body: bytes):
    """The request object of `schema` from a JSON body; a 400 naming the problem otherwise."""
    try:
        obj = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:   # UnicodeDecodeError is a ValueError
        raise bad_request(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(obj, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(obj).__name__}", code="invalid_json")
    try:
        return schema.model_validate(obj)
    except ValidationError as exc:
        raise _describe(exc, obj) from None


def _describe(exc: ValidationError, obj: dict):
    """One 400 for the first field pydantic refused, naming it (a union's members are summed up)."""
    errors = exc.errors()
    first = errors[0]
    loc = first["loc"]
    field = str(loc[0]) if loc else None
    if first["type"] == "extra_forbidden":
        path = ".".join(str(x) for x in loc)
        return bad_request(f"unsupported field '{path}': vkharp does not implement it (README, `vkharp serve`, lists "
                           f"the fields it takes)", param=path, code="unsupported_field")
    if first["type"] == "missing":
        path = ".".join(str(x) for x in loc)
        return bad_request(f"'{path}' is required", param=path)
    path = ".".join(str(x) for x in loc if not _union_member(x))
    value = first.get("input")
    kind = type(value).__name__ if value is not None else "null"
    return bad_request(f"'{path}' is invalid: {first['msg'].lower()} (got {kind} {_short(value)})", param=field)


def _union_member(part) -> bool:
    """pydantic names the member of a union it tried in the error's path ('str', 'list[int]', 'TextPart')."""
    if not isinstance(part, str):
        return False
    return "[" in part or part in _TYPE_NAMES or part[:1].isupper()


_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "function-after", "literal", "none"}


def _short(v) -> str:
    text = json.dumps(v, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def refuse_unhonourable(req: _Generation) -> None:
    """A 400 for a value we accept only in its default form (clients send those by default)."""
    if req.n != 1:
        raise bad_request(f"n={req.n}: vkharp answers one choice per request; send n=1 (or none) and repeat the "
                          f"request for more", param="n")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name) != 0:
            raise bad_request(f"{name} is not supported (only 0): vkharp's repetition penalty is llama.cpp's "
                              f"multiplicative one; use repeat_penalty (e.g. 1.1) and repeat_last_n", param=name)
    if req.logit_bias:
        raise bad_request("logit_bias is not supported (only empty)", param="logit_bias")
    stops = [req.stop] if isinstance(req.stop, str) else req.stop or []
    if len(stops) > MAX_STOP or not all(stops):
        raise bad_request(f"stop takes at most {MAX_STOP} non-empty strings", param="stop")
    if isinstance(req, ChatRequest):
        if req.tools:
            raise bad_request("tools are not supported: vkharp has no tool calling yet", param="tools")
        if req.top_logprobs is not None and not 0 <= req.top_logprobs <= 20:
            raise bad_request("top_logprobs must be in [0, 20]", param="top_logprobs")
        if req.top_logprobs and not req.logprobs:
            raise bad_request("top_logprobs needs logprobs: true", param="top_logprobs")
        if req.max_tokens is not None and req.max_completion_tokens is not None \
                and req.max_tokens != req.max_completion_tokens:
            raise bad_request("max_tokens and max_completion_tokens differ; send one", param="max_tokens")
    else:
        if req.echo:
            raise bad_request("echo is not supported (only false)", param="echo")
        if req.suffix:
            raise bad_request("suffix (insertion) is not supported", param="suffix")
        if req.best_of not in (None, 1):
            raise bad_request("best_of is not supported (only 1)", param="best_of")
        if req.logprobs is not None and not 0 <= req.logprobs <= 20:
            raise bad_request("logprobs must be in [0, 20]", param="logprobs")
    for name in ("max_tokens", "max_completion_tokens"):
        v = getattr(req, name, None)
        if v is not None and v < 0:
            raise bad_request(f"{name} must be ≥ 0, got {v}", param=name)


def settings_for(req: _Generation, defaults: GenerationSettings, room: int) -> GenerationSettings:
    """The request's settings over the server's defaults. Without a seed each request draws its own
    (OpenAI's behaviour: a repeated request differs); max_tokens is capped to the context's room,
    which ends the answer with finish_reason "length"."""
    changes = {_RENAMED.get(k, k): getattr(req, k) for k in _SETTINGS if getattr(req, k) is not None}
    if req.top_t is not None and req.min_p is not None and req.top_t != req.min_p:
        raise bad_request("min_p and top_t name the same setting; send one", param="top_t")
    if "dynatemp_range" in changes and "temp_rule" not in changes and changes["dynatemp_range"] > 0:
        changes["temp_rule"] = "dynatemp"
    wanted = getattr(req, "max_completion_tokens", None)
    wanted = req.max_tokens if wanted is None else wanted
    changes["max_tokens"] = min(defaults.max_tokens if wanted is None else wanted, room)
    if req.stop is not None:
        changes["stop"] = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop)
    changes["seed"] = req.seed if req.seed is not None else secrets.randbits(32)
    for k, v in changes.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise bad_request(f"{k} must be a finite number", param=k)
    try:
        return defaults.replace(**changes)
    except (VkharpError, TypeError) as exc:
        raise bad_request(str(exc)) from None
