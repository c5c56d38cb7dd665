"""The portal's account page: your password and your API tokens (a new one shown once)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from lakehub.server.identity.users import UserError
from lakehub.server.web.auth import forget_tokens
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, page

router = APIRouter(include_in_schema=False)
EXPIRIES = {"7": 7, "30": 30, "90": 90, "365": 365, "never": None}  # days


async def _page(
    request: Request, who: Browser, state: State, status: int = 200, **ctx: Any
) -> Response:
    if who.local:
        return page(request, "error.html", who=who, error="The local administrator has no account.")
    tokens = await state.hub.tokens(who.name)
    return page(
        request, "account.html", who=who, tokens=tokens, expiries=EXPIRIES, **ctx, status=status
    )


@router.get("/account", response_class=HTMLResponse)
async def account(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    return await _page(request, who, state, msg=msg, error=error)


@router.post("/account/password", response_class=HTMLResponse)
async def password(
    request: Request,
    who: Browser,
    state: State,
    current: Annotated[str, Form()],
    new: Annotated[str, Form()],
    confirm: Annotated[str, Form()],
) -> Response:
    """Answered here, never echoing a password; a mistake keeps nothing typed (passwords)."""
    try:
        if new != confirm:
            raise UserError("the two new passwords differ: type the same one twice")
        await state.run(state.directory.change_password, who.name, current, new)
    except UserError as err:
        return await _page(request, who, state, status=err.status, error=str(err))
    return await _page(request, who, state, msg="Password changed.")


@router.post("/account/tokens", response_class=HTMLResponse)
async def new_token(
    request: Request,
    who: Browser,
    state: State,
    note: Annotated[str, Form()] = "",
    expires: Annotated[str, Form()] = "90",
) -> Response:
    """The token is in this answer only: not in a URL, not shown again on reload."""
    note = note.strip()[:100]
    if not note or expires not in EXPIRIES:
        error = "say what the token is for" if not note else "choose an expiry from the list"
        return await _page(request, who, state, status=400, error=error, note=note)
    days = EXPIRIES[expires]
    token = await state.hub.new_token(who.name, note, days * 86400 if days else None)
    await state.run(state.directory.audit, who.name, "token.create", who.name, note)
    return await _page(request, who, state, new_token=token, new_note=note)


@router.post("/account/tokens/{token_id}/revoke")
async def revoke(token_id: str, who: Browser, state: State) -> Response:
    if who.local or not await state.hub.revoke_token(who.name, token_id):
        return back(state, "account", error=f"you have no token {token_id}")
    forget_tokens(state)
    await state.run(state.directory.audit, who.name, "token.revoke", who.name, token_id)
    return back(state, "account", msg="Token revoked: programs using it are refused from now on.")
