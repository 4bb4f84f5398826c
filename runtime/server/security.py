"""Who may use the server and how much they may send: an optional API key
(`Authorization: Bearer KEY`, compared in constant time), the request body limit, and
whether an address is reachable from other machines."""
from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError

# auto_error off: a missing key answers in OpenAI's error shape (below), not FastAPI's
bearer = HTTPBearer(auto_error=False, description="the server's API key (--api-key)")


def key_matches(given: str, expected: str) -> bool:
    # compare_digest takes as long whatever the first differing byte: no timing hint
    return hmac.compare_digest(given.encode(), expected.encode())


async def require_api_key(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None):
    """A dependency of the /v1 routes: 401 unless the server has no key or it was sent."""
    expected = request.app.state.service.options.api_key
    if not expected:
        return
    given = credentials.credentials if credentials is not None else ""
    if not (given and key_matches(given, expected)):
        raise ApiError(401, "missing or incorrect API key: send 'Authorization: Bearer KEY'",
                       code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False          # a host name: assume others can reach it


class BodyLimit:
    """ASGI middleware: request bodies over `max_bytes` get 413 in OpenAI's error shape
    (at once when Content-Length says so, else as soon as the count passes the limit)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", ())).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large().response()(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                # FastAPI passes an HTTPException raised while reading the body on to the
                # exception handlers (errors.py), which answer in OpenAI's shape
                raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, counted, send)

    def _too_large(self) -> ApiError:
        return ApiError(413, f"request body over {self.max_bytes} bytes",
                        code="request_too_large", headers={"Connection": "close"})
