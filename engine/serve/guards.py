"""What stands in front of every route: the bearer-token check (--api-key) and the body size limit.

The key is compared in constant time; /health stays open (load balancers and the tests poll it).
A body is refused with 413 from its Content-Length before it is read, or as soon as what arrives
passes the limit (chunked uploads), so an oversized request never reaches the JSON parser.
"""
from __future__ import annotations

import hmac

from .errors import ApiError

OPEN_PATHS = ("/health", "/v1/health")


class ApiKeyCheck:
    """ASGI middleware: 401 with an OpenAI error object unless `Authorization: Bearer KEY`."""

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                what = "no API key" if not given else "a wrong API key"
                err = ApiError(401, f"{what}: this server was started with --api-key; send the header "
                                    f"'Authorization: Bearer KEY'", type="authentication_error",
                               code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
                await err.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than this server's limit of {limit} bytes (--max-body)",
                    code="request_too_large")


async def read_body(request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit)
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise too_large(limit)
        parts.append(part)
    return b"".join(parts)
