"""The portal's shared spaces: create one, open it to users and groups (read or write), take
access back, forget it. The same checks as the API: the owner or an administrator changes a
space; someone who has no access to it does not learn that it exists."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from lakehub.server.identity.users import UserError
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, page

router = APIRouter(include_in_schema=False)


def _grantee(kind: str, name: str) -> dict[str, str]:
    if kind not in ("user", "group"):
        raise UserError("grant to a user or a group")
    if not name.strip():
        raise UserError(f"name the {kind}")
    return {kind: name.strip()}


async def _list(
    request: Request, who: Browser, state: State, status: int = 200, **ctx: Any
) -> Response:
    spaces = await state.run(state.spaces.visible, who.name, who.admin)
    return page(request, "spaces.html", who=who, spaces=spaces, **ctx, status=status)


@router.get("/spaces", response_class=HTMLResponse)
async def spaces(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    return await _list(request, who, state, msg=msg, error=error)


@router.post("/spaces", response_class=HTMLResponse)
async def create(
    request: Request, who: Browser, state: State, name: Annotated[str, Form()]
) -> Response:
    try:
        if who.local:
            raise UserError("the local administrator owns no spaces: use the API with an owner")
        await state.run(state.spaces.create, name.strip(), who.name, who.name)
    except UserError as err:  # the form again, as it was typed
        return await _list(request, who, state, status=err.status, error=str(err), typed=name)
    return back(state, f"spaces/{quote(name.strip())}", msg=f"space {name.strip()} created")


async def _space(
    request: Request, name: str, who: Browser, state: State, status: int = 200, **ctx: Any
) -> Response:
    try:
        view = await state.run(state.spaces.get, name, who.name, who.admin)
    except UserError as err:
        return page(request, "error.html", who=who, error=str(err), status=err.status)
    manage = who.admin or view.access == "owner"
    return page(request, "space.html", who=who, sp=view, manage=manage, **ctx, status=status)


@router.get("/spaces/{name}", response_class=HTMLResponse)
async def space(
    request: Request, name: str, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    return await _space(request, name, who, state, msg=msg, error=error)


@router.post("/spaces/{name}/grants", response_class=HTMLResponse)
async def grant(
    request: Request,
    name: str,
    who: Browser,
    state: State,
    kind: Annotated[str, Form()],
    grantee: Annotated[str, Form()],
    access: Annotated[str, Form()],
) -> Response:
    try:
        target = _grantee(kind, grantee)
        await state.run(lambda: state.spaces.grant(name, access, who.name, who.admin, **target))
    except UserError as err:
        typed = {"kind": kind, "grantee": grantee, "access": access}
        return await _space(
            request, name, who, state, status=err.status, error=str(err), typed=typed
        )
    return back(state, f"spaces/{quote(name)}", msg=f"{kind} {grantee.strip()} may {access}")


@router.post("/spaces/{name}/grants/revoke")
async def revoke(
    name: str,
    who: Browser,
    state: State,
    kind: Annotated[str, Form()],
    grantee: Annotated[str, Form()],
) -> Response:
    try:
        target = _grantee(kind, grantee)
        await state.run(lambda: state.spaces.revoke(name, who.name, who.admin, **target))
    except UserError as err:
        return back(state, f"spaces/{quote(name)}", error=str(err))
    return back(state, f"spaces/{quote(name)}", msg=f"{kind} {grantee} has no access any more")


@router.post("/spaces/{name}/delete")
async def delete(name: str, who: Browser, state: State) -> Response:
    try:
        await state.run(state.spaces.delete, name, who.name, who.admin)
    except UserError as err:
        return back(state, f"spaces/{quote(name)}", error=str(err))
    return back(state, "spaces", msg=f"space {name} forgotten; its bucket and data stay")
