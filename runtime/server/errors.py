"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}, and the
handlers that turn validation failures and HTTP errors into that shape."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("babel_edge.server")


class ApiError(Exception):
    """An answer other than 200, with OpenAI's error body."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _field(loc) -> str:
    # ("body", "messages", 0, "role") -> "messages[0].role"
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_message(errors) -> tuple[str, str | None]:
    """(one message naming every failing field, the first field) from pydantic's errors."""
    parts, first = [], None
    for e in errors:
        field = _field(e.get("loc", ()))
        if e.get("type") == "json_invalid":
            return f"malformed JSON: {e.get('ctx', {}).get('error', e.get('msg'))}", None
        if not field and e.get("type") in ("model_attributes_type", "dict_type", "model_type"):
            return ("the request body must be a JSON object (and sent with "
                    "Content-Type: application/json)"), None
        if e.get("type") == "missing":
            parts.append(f"'{field}' is required")
        else:
            got = f" (got {e['input']!r})" if "input" in e and not isinstance(
                e["input"], (dict, list, bytes)) else ""
            parts.append(f"'{field}': {e.get('msg', 'invalid')}{got}" if field else e.get("msg", "invalid"))
        first = first or field or None
    return "; ".join(parts) or "invalid request", first


def install_handlers(app: FastAPI) -> None:
    """ApiError, validation errors (400, as OpenAI answers) and HTTP errors (404, 405, 413)
    all answer in OpenAI's error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError):
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        message, param = validation_message(e.errors())
        return JSONResponse(error_body(message, param=param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(e.status_code)
        message = (f"no route {request.method} {request.url.path}" if e.status_code in (404, 405)
                   else str(e.detail))
        return JSONResponse(error_body(message, code=code), status_code=e.status_code,
                            headers=getattr(e, "headers", None))

class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body (for the API description)."""
    error: ErrorDetail


class CatchAll:
    """ASGI middleware: an unexpected exception becomes a JSON 500 (logged with its
    traceback) and the server goes on serving."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_started(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_started)
        except Exception as e:  # noqa: BLE001 - the point of this middleware
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if not started:         # else the answer is half sent: the connection just ends
                await JSONResponse(error_body(
                    f"internal server error ({type(e).__name__}); the server log has the details",
                    "server_error", code="internal_error"), status_code=500)(scope, receive, send)
