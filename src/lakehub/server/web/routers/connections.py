"""External S3 connections: the JSON API, the portal pages, and the notebook profiles they feed."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from lakehub.server.connections import Connections, ConnectionSecret, ConnectionView
from lakehub.server.identity.users import UserError
from lakehub.server.lake import browse as browse_area
from lakehub.server.web.auth import Principal, person
from lakehub.server.web.routers.api import State, User
from lakehub.server.web.routers.portal import Browser, _lake_error, back, page
from lakehub.server.web.state import AppState

router = APIRouter(prefix="/api/connections", tags=["connections"])
pages = APIRouter(prefix="/connections", include_in_schema=False)
log = logging.getLogger("lakehub.api")


def area(state: AppState) -> Connections:
    return state.connections()


class NewConnection(BaseModel):
    # defaults everywhere: a missing field gets the area's readable message, not a 422 that
    # would echo the request (and its secret) back
    name: str = ""
    endpoint_url: str = ""
    access_key_id: str = ""
    secret_access_key: str = Field(default="", repr=False)
    region: str = Field(default="", description="Default: us-east-1")
    bucket: str = Field(default="", description="Optional: the one bucket these keys may use")
    verify: bool = Field(default=True, description="Try the credentials on the endpoint first")


@router.get("")
async def list_connections(who: User, state: State) -> list[ConnectionView]:
    """Your connections, without their secrets."""
    return await state.run(area(state).owned_by, person(who, "connections"))


@router.post("", status_code=201)
async def create_connection(body: NewConnection, who: User, state: State) -> ConnectionView:
    """Register an S3-compatible endpoint; the credentials are tried first unless verify=false."""
    owner = person(who, "connections")
    return await state.run(
        lambda: area(state).create(
            owner,
            body.name,
            body.endpoint_url,
            body.access_key_id,
            body.secret_access_key,
            region=body.region,
            bucket=body.bucket,
            verify_first=body.verify,
        )
    )


@router.get("/{name}")
async def get_connection(name: str, who: User, state: State) -> ConnectionView:
    return await state.run(area(state).get, person(who, "connections"), name)


@router.get("/{name}/credentials")
async def connection_credentials(
    name: str, who: User, state: State, response: Response
) -> ConnectionSecret:
    """The connection with its secret: for its owner only."""
    c = await state.run(area(state).credentials, person(who, "connections"), name)
    response.headers["Cache-Control"] = "no-store"
    return c


@router.delete("/{name}", status_code=204)
async def delete_connection(name: str, who: User, state: State) -> Response:
    await state.run(area(state).delete, person(who, "connections"), name)
    return Response(status_code=204)


# portal ------------------------------------------------------------------------------------
@pages.get("", response_class=HTMLResponse)
async def connections_page(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    rows = await state.run(area(state).owned_by, person(who, "connections"))
    return page(request, "connections.html", who=who, connections=rows, msg=msg, error=error)


@pages.post("")
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
        resp = page(
            request, "connections.html", who=who, connections=rows, error=str(err), form=form
        )
        resp.status_code = err.status
        return resp
    return back(state, "connections", msg=f"Connection {name} added.")


@pages.post("/{name}/delete")
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
        status, reason = _lake_error(err)
    else:
        status, reason = 502, f"The endpoint is not answering: {err}"
    resp = page(
        request,
        "browse.html",
        who=who,
        buckets=[],
        listing=None,
        error=reason,
        root=_root(request, name),
        root_title=name,
    )
    resp.status_code = status
    return resp


def _root(request: Request, name: str) -> str:
    return f"{request.app.state.lh.prefix}connections/{quote(name, safe='')}/browse"


@pages.get("/{name}/browse", response_class=HTMLResponse)
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


@pages.get("/{name}/browse/{bucket}", response_class=HTMLResponse)
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
        if key:
            meta = await state.run(browse_area.head, s3, bucket, key)
            shown = await state.run(browse_area.preview, s3, bucket, key, meta["size"])
            url = browse_area.download_url(s3, bucket, key)
            return page(
                request,
                "object.html",
                who=who,
                bucket=bucket,
                key=key,
                meta=meta,
                preview=shown,
                download=url,
                root=root,
                root_title=name,
                read_only=True,
            )
        listing = await state.run(browse_area.listing, s3, bucket, prefix)
    except (ClientError, BotoCoreError) as err:
        return _failure(request, who, err, name)
    return page(
        request, "browse.html", who=who, buckets=None, listing=listing, root=root, root_title=name
    )
