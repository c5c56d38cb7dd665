"""Finding a request's route without trying every route of the app.

FastAPI (0.165) tries an app's routes one by one, in order, and each try costs some 8 us of
Python (the included router's bookkeeping around one regular expression), twice per request:
with some 250 routes in 45 routers, a call to a router near the end spent ~1.5 ms choosing its
route, most of the control plane's own time for a small answer. :class:`Room` puts one area's
router behind a test of its routes' fixed beginnings (``/services/lakehub/api/ops/`` of
``/api/ops/dashboards/{name}``): a request that starts with none of them is no match for any
route of the area, so the area's routes are not tried. Which route a request reaches is
unchanged (the same routes, in the same order; a method not allowed is still a 405, a missing
slash still redirected).
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.routing import Match
from starlette.types import Scope


def fixed(path: str) -> str:
    """The beginning of a route's path before its first parameter."""
    return path.split("{", 1)[0]


def route_path(scope: Scope) -> str:
    """The path routes match (the request's, less the app's root path), as Starlette reads it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


class Room(APIRouter):
    """``area``'s routes, included under ``prefix``, tried only by requests that begin as one
    of them does."""

    def __init__(self, area: APIRouter, prefix: str) -> None:
        super().__init__()
        self.include_router(area)
        paths: list[str | None] = [getattr(r, "path", None) for r in area.routes]
        # a route matched by something else than its path (a host): every request may be its
        self.heads = tuple({prefix + fixed(p) if p is not None else "" for p in paths})

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not route_path(scope).startswith(self.heads):
            return Match.NONE, {}
        return super().matches(scope)
