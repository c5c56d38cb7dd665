"""Environment variables for notebook servers: the JSON API (``/api/env``) and the portal page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from lakehub.server.identity.envvars import EnvVars, EnvVarView
from lakehub.server.identity.users import UserError
from lakehub.server.web.auth import person
from lakehub.server.web.routers.api import State, User
from lakehub.server.web.routers.portal import Browser, back, page
from lakehub.server.web.state import AppState

router = APIRouter(prefix="/api/env", tags=["env"])
pages = APIRouter(prefix="/env", include_in_schema=False)


def area(state: AppState) -> EnvVars:
    return EnvVars(state.directory)


class EnvVarIn(BaseModel):
    # loose types on purpose: the area's readable 400 instead of a 422 that echoes the value
    value: Any = Field(default=None, repr=False)
    secret: Any = False


@router.get("")
async def list_env(who: User, state: State, response: Response) -> list[EnvVarView]:
    """Your variables; secret ones without their value."""
    rows = await state.run(area(state).owned_by, person(who, "environment variables"))
    response.headers["Cache-Control"] = "no-store"
    return rows


@router.put("/{name}")
async def set_env(name: str, body: EnvVarIn, who: User, state: State) -> EnvVarView:
    """Create or replace a variable; it reaches your servers at their next start."""
    owner = person(who, "environment variables")
    if not isinstance(body.secret, bool):
        raise HTTPException(400, "secret must be true or false")
    return await state.run(lambda: area(state).set(owner, name, body.value, secret=body.secret))


@router.delete("/{name}", status_code=204)
async def delete_env(name: str, who: User, state: State) -> Response:
    await state.run(area(state).delete, person(who, "environment variables"), name)
    return Response(status_code=204)


# portal ------------------------------------------------------------------------------------
@pages.get("", response_class=HTMLResponse)
async def env_page(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    rows = await state.run(area(state).owned_by, person(who, "environment variables"))
    return page(request, "env.html", who=who, variables=rows, msg=msg, error=error)


@pages.post("")
async def env_add(
    request: Request,
    who: Browser,
    state: State,
    name: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
    secret: Annotated[str, Form()] = "",
) -> Response:
    owner = person(who, "environment variables")
    try:
        await state.run(lambda: area(state).set(owner, name.strip(), value, secret=bool(secret)))
    except UserError as err:
        rows = await state.run(area(state).owned_by, who.name)
        resp = page(
            request,
            "env.html",
            who=who,
            variables=rows,
            error=str(err),
            form={"name": name, "secret": bool(secret)},
        )
        resp.status_code = err.status
        return resp
    return back(state, "env", msg=f"Variable {name.strip()} saved.")


@pages.post("/{name}/delete")
async def env_delete(name: str, who: Browser, state: State) -> Response:
    try:
        await state.run(area(state).delete, person(who, "environment variables"), name)
    except UserError as err:
        return back(state, "env", error=str(err))
    return back(state, "env", msg=f"Variable {name} deleted.")
