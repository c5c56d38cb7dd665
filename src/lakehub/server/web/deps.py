"""The request dependencies every handler declares: the platform, and who is asking.

``State`` is the platform the app serves (``request.app.state.lh``). ``User``, ``Admin`` and
``LocalAdmin`` are callers of the JSON API, by their JupyterHub token (``Admin`` is any
administrator, ``LocalAdmin`` only the hub's own operator); ``Browser`` is a person in the portal,
by the session cookie and a same-origin check on every POST. See :mod:`lakehub.server.web.auth`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lakehub.server.web.auth import (
    Principal,
    browser_user,
    require_admin,
    require_local_admin,
    require_user,
)
from lakehub.server.web.state import AppState

User = Annotated[Principal, Depends(require_user)]
Admin = Annotated[Principal, Depends(require_admin)]
LocalAdmin = Annotated[Principal, Depends(require_local_admin)]
Browser = Annotated[Principal, Depends(browser_user)]


def lh(request: Request) -> AppState:
    state: AppState = request.app.state.lh
    return state


State = Annotated[AppState, Depends(lh)]
