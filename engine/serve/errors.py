"""OpenAI-style error objects: every refusal the server makes is one of these, never a bare 500.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "temperature", "code": null}}

`type` follows OpenAI's (invalid_request_error, authentication_error, server_error) plus llama-server's
unavailable_error for 503s; `code` is a number for 503 (as llama-server sends it) and a string or null
otherwise.
"""
from __future__ import annotations

from starlette.responses import JSONResponse


class ApiError(Exception):
    """A request the server refuses or could not finish, with the HTTP status to answer it with."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code=None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def loading() -> ApiError:
    """What llama-server answers while the model loads (clients and tests poll /health for it)."""
    return ApiError(503, "Loading model", type="unavailable_error", code=503)


def busy(retry_after: int, queued: int) -> ApiError:
    return ApiError(503, f"the server is busy: {queued} requests are already waiting (its --queue bound); "
                         f"retry in about {retry_after} s", type="unavailable_error", code=503,
                    headers={"Retry-After": str(retry_after)})


def server_error(message: str) -> ApiError:
    return ApiError(500, message, type="server_error")
