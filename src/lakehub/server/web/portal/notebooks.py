"""Portal pages for notebooks: your servers on the home page, and the environments page, where
administrators add, change and rebuild environments and read their build logs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse

from lakehub.server.identity.users import UserError
from lakehub.server.web.api.servers import options_for, server_name
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, page

router = APIRouter(include_in_schema=False)


@router.get("/environments", response_class=HTMLResponse)
async def environments_page(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    return await environments_view(request, who, state, msg=msg, error=error)


async def environments_view(
    request: Request, who: Browser, state: State, status: int = 200, **ctx: Any
) -> Response:
    """The page; for administrators also every size and every group's and user's policy."""
    choices, envs = await options_for(state, who)
    sizes, policies = choices.sizes, []
    if who.admin:
        envs = await state.run(state.environments.all)
        sizes = await state.run(state.policies.sizes)
        policies = await state.run(state.policies.all)
    return page(
        request,
        "environments.html",
        who=who,
        envs=envs,
        sizes=sizes,
        choices=choices,
        policies=policies,
        **{"msg": "", "error": "", "typed": {}, **ctx},
        status=status,
    )


@router.post("/environments")
async def environment_save(
    request: Request,
    who: Browser,
    state: State,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    python: Annotated[str, Form()] = "3.11",
    packages: Annotated[str, Form()] = "",
) -> Response:
    if not who.admin:
        return back(state, "environments", error="only administrators change environments")
    wanted = [p.strip() for p in packages.replace(",", "\n").splitlines() if p.strip()]
    try:
        await state.run(
            state.environments.put,
            name.strip(),
            description.strip(),
            python.strip(),
            wanted,
            who.name,
        )
    except UserError as err:
        return back(state, "environments", error=str(err))
    return back(
        state,
        "environments",
        msg=f"Environment {name.strip()} saved; it is built in "
        "the background, and servers keep the previous build until then.",
    )


@router.post("/environments/{name}/build")
async def environment_build(name: str, who: Browser, state: State) -> Response:
    if not who.admin:
        return back(state, "environments", error="only administrators rebuild environments")
    try:
        await state.run(state.environments.rebuild, name, who.name)
    except UserError as err:
        return back(state, "environments", error=str(err))
    return back(state, "environments", msg=f"Environment {name} queued for a build.")


@router.post("/servers/{name}/stop")
async def server_stop(name: str, who: Browser, state: State) -> Response:
    try:
        server = server_name(name)
    except UserError as err:
        return back(state, "", error=str(err))
    if server in (await state.hub.active_servers()).get(who.name, {}):
        await state.hub.stop_server(who.name, server)
    return back(state, "", msg=f"Stopping server {name}; your files stay.")
