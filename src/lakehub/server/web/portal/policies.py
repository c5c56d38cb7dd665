"""The portal's forms for sizes and notebook policies (administrators), on the environments
page: the same checks as the API (``/api/sizes``, ``/api/notebook-policies``), sizes and
memory as people write them, a refused form kept as typed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from lakehub.server.identity.users import UserError
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back
from lakehub.server.web.portal.notebooks import environments_view
from lakehub.sizes import parse_size

router = APIRouter(include_in_schema=False)
ADMINS_ONLY = "only administrators change sizes and policies"


def _bytes(text: str, what: str) -> int | None:
    try:
        return parse_size(text.strip()) if text.strip() else None
    except ValueError as err:
        raise UserError(f"{what}: {err}") from None


def _whole(text: str, what: str) -> int | None:
    if not text.strip():
        return None
    if not text.strip().isdigit():
        raise UserError(f"{what}: a whole number, or nothing")
    return int(text)


def _names(text: str) -> list[str] | None:
    names = [n for n in text.replace(",", " ").split() if n]
    return names or None


@router.post("/sizes", response_class=HTMLResponse)
async def put_size(
    request: Request,
    who: Browser,
    state: State,
    name: Annotated[str, Form()],
    cpus: Annotated[str, Form()],
    memory: Annotated[str, Form()],
    description: Annotated[str, Form()] = "",
) -> Response:
    if not who.admin:
        return back(state, "environments", error=ADMINS_ONLY)
    try:
        try:
            cores = float(cpus)
        except ValueError:
            raise UserError("CPUs: a number, such as 0.5 or 2") from None
        size = _bytes(memory, "memory")
        if size is None:
            raise UserError("memory: give one, such as 4 GiB")
        await state.run(state.policies.put_size, name.strip(), cores, size, description.strip())
    except UserError as err:
        typed = {"size": name, "cpus": cpus, "memory": memory, "size_description": description}
        return await environments_view(request, who, state, err.status, error=str(err), typed=typed)
    return back(state, "environments", msg=f"size {name.strip()} saved")


@router.post("/sizes/{name}/delete")
async def delete_size(name: str, who: Browser, state: State) -> Response:
    if not who.admin:
        return back(state, "environments", error=ADMINS_ONLY)
    try:
        await state.run(state.policies.delete_size, name)
    except UserError as err:
        return back(state, "environments", error=str(err))
    return back(state, "environments", msg=f"size {name} removed")


@router.post("/policies", response_class=HTMLResponse)
async def put_policy(
    request: Request,
    who: Browser,
    state: State,
    kind: Annotated[str, Form()],
    name: Annotated[str, Form()],
    environments: Annotated[str, Form()] = "",
    sizes: Annotated[str, Form()] = "",
    max_servers: Annotated[str, Form()] = "",
    max_memory: Annotated[str, Form()] = "",
    idle_minutes: Annotated[str, Form()] = "",
) -> Response:
    """The whole policy as the form has it: an empty field sets nothing (others decide)."""
    if not who.admin:
        return back(state, "environments", error=ADMINS_ONLY)
    try:
        minutes = _whole(idle_minutes, "idle timeout")
        fields: dict[str, Any] = {
            "environments": _names(environments),
            "sizes": _names(sizes),
            "max_servers": _whole(max_servers, "servers at once"),
            "max_memory": _bytes(max_memory, "memory in all"),
            "cull_timeout": None if minutes is None else minutes * 60,
        }
        await state.run(state.policies.put, kind, name.strip(), fields, who.name)
    except UserError as err:
        typed = {
            "kind": kind,
            "name": name,
            "environments": environments,
            "sizes": sizes,
            "max_servers": max_servers,
            "max_memory": max_memory,
            "idle_minutes": idle_minutes,
        }
        return await environments_view(request, who, state, err.status, error=str(err), typed=typed)
    return back(state, "environments", msg=f"policy of {kind} {name.strip()} saved")


@router.post("/policies/{kind}/{name}/delete")
async def delete_policy(kind: str, name: str, who: Browser, state: State) -> Response:
    if not who.admin:
        return back(state, "environments", error=ADMINS_ONLY)
    try:
        await state.run(state.policies.delete, kind, name, who.name)
    except UserError as err:
        return back(state, "environments", error=str(err))
    return back(state, "environments", msg=f"policy of {kind} {name} removed")
