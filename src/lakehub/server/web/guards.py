"""Odd input gets a readable 4xx, at one place for the whole app.

Rules:

- Text must be Unicode: a JSON body may spell a lone surrogate (``"\\ud800"``), which no
  database, file or encoder takes. ``no_lone_surrogates`` (a dependency of every route) refuses
  it with a 422 naming the field, whatever the field's type (``Any`` fields included). Paths,
  queries and forms cannot carry one: Starlette decodes them with replacement characters.
- A 422 lists the fields in error but never echoes the refused input: it may be a secret, or
  text the answer could not even encode.
- A 405 says in ``Allow`` every method the path takes (not only the first route's).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_SURROGATE = "unable to parse raw data as a unicode string (it holds a lone surrogate)"


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _surrogates(doc: Any) -> list[tuple[str | int, ...]]:
    """Where ``doc`` (parsed JSON) holds a lone surrogate, in keys or values; iterative, so
    depth costs no recursion."""
    found: list[tuple[str | int, ...]] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), doc)]
    while stack and len(found) < 10:
        loc, value = stack.pop()
        if isinstance(value, str):
            if _has_surrogate(value):
                found.append(loc)
        elif isinstance(value, dict):
            for k, v in value.items():
                if _has_surrogate(k):
                    found.append((*loc, k.encode("utf-8", "backslashreplace").decode()))
                stack.append(((*loc, k), v))
        elif isinstance(value, list):
            stack.extend(((*loc, i), v) for i, v in enumerate(value))
    return found


async def no_lone_surrogates(request: Request) -> None:
    if "json" not in request.headers.get("content-type", ""):
        return
    try:
        doc = await request.json()  # cached: FastAPI parsed it already for a body parameter
    except (ValueError, RecursionError):
        return  # FastAPI refuses it for a route with a body; a route without one ignores it
    errors = [
        {"type": "string_unicode", "loc": ("body", *loc), "msg": _SURROGATE}
        for loc in _surrogates(doc)
    ]
    if errors:
        raise RequestValidationError(errors)


async def validation_error(request: Request, err: Exception) -> Response:
    assert isinstance(err, RequestValidationError)
    errors = [{k: v for k, v in e.items() if k not in ("input", "url")} for e in err.errors()]
    detail = jsonable_encoder(errors)
    # a surrogate can still hide in a location (a key) or a message: answer with escapes
    return JSONResponse({"detail": _escaped(detail)}, status_code=422)


def _escaped(doc: Any) -> Any:
    if isinstance(doc, str):
        return doc.encode("utf-8", "backslashreplace").decode() if _has_surrogate(doc) else doc
    if isinstance(doc, list):
        return [_escaped(v) for v in doc]
    if isinstance(doc, dict):
        return {_escaped(k): _escaped(v) for k, v in doc.items()}
    return doc


async def http_error(request: Request, err: Exception) -> Response:
    """FastAPI's answer for an HTTPException, with the full ``Allow`` on a 405."""
    assert isinstance(err, HTTPException)
    headers = dict(err.headers or {})
    if err.status_code == 405:
        # asked method by method: routers nest, and a nested one answers for its whole tree
        allowed = [
            m
            for m in METHODS
            if any(
                route.matches({**request.scope, "method": m})[0] == Match.FULL
                for route in request.app.router.routes
            )
        ]
        headers["Allow"] = ", ".join(allowed) or headers.get("Allow", "")
    if err.status_code in (204, 304):
        return Response(status_code=err.status_code, headers=headers)
    return JSONResponse({"detail": err.detail}, status_code=err.status_code, headers=headers)


class NoSniff:
    """Every answer says ``X-Content-Type-Options: nosniff``: a browser takes its declared type
    (the portal shows lake text only inside escaped HTML, never as a page of its own)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-content-type-options", b"nosniff"),
                ]
            await send(message)

        return await self.app(scope, receive, sending)
