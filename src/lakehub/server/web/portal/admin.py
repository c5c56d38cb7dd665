"""The administrators' page: users and groups, quotas, what is running (every server and
cluster), and the audit trail. Administrators manage users without becoming them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from lakehub.server.identity.users import UserError
from lakehub.server.notebooks.jupyterhub_api import HubAPIError
from lakehub.server.web.api.compute import clusters_of
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, page
from lakehub.server.web.state import AppState
from lakehub.sizes import parse_size

router = APIRouter(include_in_schema=False)


async def running(state: AppState) -> tuple[list[dict[str, Any]], list[Any], list[str]]:
    """Every notebook server (user, name, options) and every cluster of every engine, and the
    engines that could not answer."""
    down = []
    try:
        active = await state.hub.active_servers()
    except HubAPIError as err:
        active, down = {}, [f"notebook servers: {err}"]
    servers = [
        {"user": user, "name": name or "default", **opts}
        for user, names in sorted(active.items())
        for name, opts in sorted(names.items())
    ]
    clusters, engines_down = await clusters_of(state, None)
    return servers, sorted(clusters, key=lambda c: (c.owner, c.kind, c.name)), down + engines_down


@router.get("/admin", response_class=HTMLResponse)
async def admin(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    return await _admin(request, who, state, msg=msg, error=error)


async def _admin(
    request: Request,
    who: Browser,
    state: State,
    *,
    status: int = 200,
    msg: str = "",
    error: str = "",
    typed: dict[str, str] | None = None,
) -> Response:
    if not who.admin:
        return page(request, "error.html", who=who, error="Administrators only.")
    users = await state.run(state.directory.list_users)
    groups = await state.run(state.directory.groups)
    events = await state.run(state.directory.events, 50)
    quotas = await state.run(state.quotas.visible, who.name, True)
    servers, clusters, down = await running(state)
    return page(
        request,
        "admin.html",
        who=who,
        users=users,
        groups=groups,
        events=events,
        quotas=quotas,
        servers=servers,
        clusters=clusters,
        down=down,
        msg=msg,
        error=error,
        typed=typed or {},
        status=status,
    )


@router.post("/admin/users")
async def admin_users(
    request: Request,
    who: Browser,
    state: State,
    action: Annotated[str, Form()],
    name: Annotated[str, Form()],
    group: Annotated[str, Form()] = "",
) -> Response:
    if not who.admin:
        return back(state, "", error="Administrators only.")
    d = state.directory
    try:
        if action == "create":
            user, password = await state.run(lambda: d.create(name, actor=who.name))
            await state.hub.ensure_user(user.name, user.admin)
            # answered here, not through a redirect: a password never goes into a URL (browser
            # history, logs), and reloading the page does not show it again
            shown = f"Created {name}. Password (shown once): {password}"
            return await _admin(request, who, state, msg=shown)
        if action == "approve":
            await state.run(d.approve, name, who.name)
        elif action in ("make-admin", "drop-admin"):
            if name == who.name:
                raise UserError("you cannot change your own admin rights")
            await state.run(d.set_admin, name, action == "make-admin", who.name)
            await state.hub.ensure_user(name, action == "make-admin")
        elif action == "delete":
            if name == who.name:
                raise UserError("you cannot delete yourself")
            await state.remove_user(name, who.name)
        elif action == "create-group":
            await state.run(d.create_group, name, who.name)
        elif action == "add-member":
            await state.run(d.add_member, group, name, who.name)
        elif action == "remove-member":
            await state.run(d.remove_member, group, name, who.name)
        else:
            raise UserError(f"unknown action {action!r}")
    except UserError as err:
        return back(state, "admin", error=str(err))
    return back(state, "admin", msg=f"{action.replace('-', ' ')}: {name} done")


@router.post("/admin/quotas", response_class=HTMLResponse)
async def set_quota(
    request: Request,
    who: Browser,
    state: State,
    kind: Annotated[str, Form()],
    name: Annotated[str, Form()],
    max_bytes: Annotated[str, Form()] = "",
    max_objects: Annotated[str, Form()] = "",
) -> Response:
    """A quota on a user's buckets or a space: sizes as people write them ("10 GiB")."""
    if not who.admin:
        return back(state, "", error="Administrators only.")
    try:
        try:
            size = parse_size(max_bytes) if max_bytes.strip() else None
        except ValueError as err:
            raise UserError(f"size: {err}") from None
        if max_objects.strip() and not max_objects.strip().isdigit():
            raise UserError("objects: a whole number, or nothing for no limit")
        count = int(max_objects) if max_objects.strip() else None
        if size is None and count is None:
            raise UserError("give a size, a number of objects, or both")
        await state.run(state.quotas.set, kind, name.strip(), size, count, who.name)
    except UserError as err:  # the form again, as it was typed
        typed = {"kind": kind, "name": name, "max_bytes": max_bytes, "max_objects": max_objects}
        return await _admin(request, who, state, status=err.status, error=str(err), typed=typed)
    return back(state, "admin", msg=f"quota on {kind} {name.strip()} set")


@router.post("/admin/quotas/remove")
async def remove_quota(
    who: Browser, state: State, kind: Annotated[str, Form()], name: Annotated[str, Form()]
) -> Response:
    if not who.admin:
        return back(state, "", error="Administrators only.")
    try:
        await state.run(state.quotas.remove, kind, name, who.name)
    except UserError as err:
        return back(state, "admin", error=str(err))
    return back(state, "admin", msg=f"quota on {kind} {name} removed")
