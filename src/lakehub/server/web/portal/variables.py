"""The portal's variables page: your notebook servers' environment variables, added, replaced
and deleted; secret ones are shown without their value."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse

from lakehub.server.identity.users import UserError
from lakehub.server.web.api.variables import area
from lakehub.server.web.auth import person
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, page

router = APIRouter(prefix="/env", include_in_schema=False)


@router.get("", response_class=HTMLResponse)
async def env_page(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    rows = await state.run(area(state).owned_by, person(who, "environment variables"))
    return page(request, "env.html", who=who, variables=rows, msg=msg, error=error)


@router.post("")
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
        return page(
            request,
            "env.html",
            who=who,
            variables=rows,
            error=str(err),
            form={"name": name, "secret": bool(secret)},
            status=err.status,
        )
    return back(state, "env", msg=f"Variable {name.strip()} saved.")


@router.post("/{name}/delete")
async def env_delete(name: str, who: Browser, state: State) -> Response:
    try:
        await state.run(area(state).delete, person(who, "environment variables"), name)
    except UserError as err:
        return back(state, "env", error=str(err))
    return back(state, "env", msg=f"Variable {name} deleted.")
