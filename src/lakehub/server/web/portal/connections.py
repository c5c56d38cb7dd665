"""The portal's connections page: add and delete your external S3 connections, and browse their
buckets read-only with their own keys."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse

from lakehub.server.identity.users import UserError
from lakehub.server.web.api.connections import area
from lakehub.server.web.auth import Principal, person
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, browse_page, lake_error, page

router = APIRouter(prefix="/connections", include_in_schema=False)


@router.get("", response_class=HTMLResponse)
async def connections_page(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    rows = await state.run(area(state).owned_by, person(who, "connections"))
    return page(request, "connections.html", who=who, connections=rows, msg=msg, error=error)


@router.post("")
async def connections_add(
    request: Request,
    who: Browser,
    state: State,
    name: Annotated[str, Form()] = "",
    endpoint_url: Annotated[str, Form()] = "",
    access_key_id: Annotated[str, Form()] = "",
    secret_access_key: Annotated[str, Form()] = "",
    region: Annotated[str, Form()] = "",
    bucket: Annotated[str, Form()] = "",
    verify: Annotated[str, Form()] = "",
) -> Response:
    owner = person(who, "connections")
    try:
        await state.run(
            lambda: area(state).create(
                owner,
                name,
                endpoint_url,
                access_key_id,
                secret_access_key,
                region=region,
                bucket=bucket,
                verify_first=bool(verify),
            )
        )
    except UserError as err:
        rows = await state.run(area(state).owned_by, who.name)
        form = {
            "name": name,
            "endpoint_url": endpoint_url,
            "access_key_id": access_key_id,
            "region": region,
            "bucket": bucket,
        }
        return page(
            request,
            "connections.html",
            who=who,
            connections=rows,
            error=str(err),
            form=form,
            status=err.status,
        )
    return back(state, "connections", msg=f"Connection {name} added.")


@router.post("/{name}/delete")
async def connections_delete(name: str, who: Browser, state: State) -> Response:
    try:
        await state.run(area(state).delete, person(who, "connections"), name)
    except UserError as err:
        return back(state, "connections", error=str(err))
    return back(state, "connections", msg=f"Connection {name} deleted.")


def _failure(request: Request, who: Principal, err: Exception, name: str) -> Response:
    from botocore.exceptions import ClientError

    if isinstance(err, UserError):
        status, reason = err.status, str(err)
    elif isinstance(err, ClientError):
        status, reason = lake_error(err)
    else:
        status, reason = 502, f"The endpoint is not answering: {err}"
    return page(
        request,
        "browse.html",
        who=who,
        buckets=[],
        listing=None,
        error=reason,
        root=_root(request, name),
        root_title=name,
        status=status,
    )


def _root(request: Request, name: str) -> str:
    return f"{request.app.state.lh.prefix}connections/{quote(name, safe='')}/browse"


@router.get("/{name}/browse", response_class=HTMLResponse)
async def connection_buckets(request: Request, name: str, who: Browser, state: State) -> Response:
    from botocore.exceptions import BotoCoreError, ClientError

    conn = area(state)
    try:
        view = await state.run(conn.get, person(who, "connections"), name)
        s3 = await state.run(conn.client, who.name, name)
    except UserError as err:
        return _failure(request, who, err, name)
    try:
        buckets = await state.run(lambda: [b["Name"] for b in s3.list_buckets()["Buckets"]])
    except (ClientError, BotoCoreError) as err:
        if not view.bucket:  # keys limited to one bucket may not list them all
            return _failure(request, who, err, name)
        buckets = []
    names = sorted(set(buckets) | ({view.bucket} if view.bucket else set()))
    return page(
        request,
        "browse.html",
        who=who,
        buckets=names,
        listing=None,
        root=_root(request, name),
        root_title=name,
    )


@router.get("/{name}/browse/{bucket}", response_class=HTMLResponse)
async def connection_browse(
    request: Request,
    name: str,
    bucket: str,
    who: Browser,
    state: State,
    prefix: str = "",
    key: str = "",
) -> Response:
    from botocore.exceptions import BotoCoreError, ClientError

    root = _root(request, name)
    try:
        s3: Any = await state.run(area(state).client, person(who, "connections"), name)
    except UserError as err:
        return _failure(request, who, err, name)
    try:
        return await browse_page(
            request,
            state,
            s3,
            bucket,
            prefix,
            key,
            who=who,
            root=root,
            root_title=name,
            read_only=True,
        )
    except (ClientError, BotoCoreError) as err:
        return _failure(request, who, err, name)
