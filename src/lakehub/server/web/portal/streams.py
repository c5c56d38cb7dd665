"""The portal's streams: what arrives (rate, bytes, last event), what reached the lake (lag),
errors, and a preview of record streams."""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from lakehub.server.identity.users import UserError
from lakehub.server.ingest.registry import Registry
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, page

router = APIRouter(include_in_schema=False)


def ago(at: float | None) -> str:
    if at is None:
        return "never"
    s = max(0.0, time.time() - at)
    return (
        f"{s:.0f} s ago"
        if s < 120
        else f"{s / 60:.0f} min ago"
        if s < 7200
        else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))
    )


def _tags(text: str) -> list[str]:
    return [t for t in text.replace(",", " ").split() if t]


async def _streams(
    request: Request, who: Browser, state: State, status: int = 200, **ctx: Any
) -> Response:
    registry = Registry(state.directory)
    found = await state.run(registry.streams, who.name, who.admin)
    sources = [] if who.local else await state.run(registry.sources, who.name, False)
    s, p = state.settings, state.runtime.ports
    return page(
        request,
        "streams.html",
        who=who,
        streams=found,
        sources=sources,
        ago=ago,
        forward=f"{s.ingest_host}:{p.get('forward')}",
        http=f"{s.ingest_host}:{p.get('ingest_http')}",
        **ctx,
        status=status,
    )


@router.get("/streams", response_class=HTMLResponse)
async def streams(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    return await _streams(request, who, state, msg=msg, error=error)


@router.post("/streams", response_class=HTMLResponse)
async def new_stream(
    request: Request,
    who: Browser,
    state: State,
    name: Annotated[str, Form()],
    tags: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "records",
    path: Annotated[str, Form()] = "",
) -> Response:
    try:
        if who.local:
            raise UserError("the local administrator owns no streams: use the API with an owner")
        await state.run(
            lambda: Registry(state.directory).create_stream(
                name.strip(), who.name, kind, _tags(tags), who.name, path=path.strip() or None
            )
        )
    except UserError as err:  # the form again, as it was typed
        typed = {"name": name, "tags": tags, "kind": kind, "path": path}
        return await _streams(request, who, state, err.status, error=str(err), stream=typed)
    return back(state, f"streams/{quote(name.strip())}", msg=f"stream {name.strip()} created")


@router.post("/streams/sources", response_class=HTMLResponse)
async def new_source(
    request: Request,
    who: Browser,
    state: State,
    name: Annotated[str, Form()],
    tags: Annotated[str, Form()] = "",
    shared_key: Annotated[str, Form()] = "",
) -> Response:
    """The source's token and shared key are in this answer only: not in a URL, not again."""
    try:
        if who.local:
            raise UserError("the local administrator owns no sources: use the API with an owner")
        made = await state.run(
            lambda: Registry(state.directory).create_source(
                name.strip(), who.name, _tags(tags), who.name, shared_key=bool(shared_key)
            )
        )
    except UserError as err:
        typed = {"name": name, "tags": tags, "shared_key": shared_key}
        return await _streams(request, who, state, err.status, error=str(err), source=typed)
    return await _streams(request, who, state, 201, made=made)


@router.post("/sources/{name:path}/delete")
async def delete_source(name: str, who: Browser, state: State) -> Response:
    try:
        await state.run(Registry(state.directory).delete_source, name, who.name, who.admin)
    except UserError as err:
        return back(state, "streams", error=str(err))
    return back(state, "streams", msg=f"source {name} deleted: its token and key are refused")


@router.post("/streams/{name:path}/delete")
async def delete_stream(name: str, who: Browser, state: State) -> Response:
    try:
        await state.run(Registry(state.directory).delete_stream, name, who.name, who.admin)
    except UserError as err:
        return back(state, f"streams/{quote(name)}", error=str(err))
    return back(state, "streams", msg=f"stream {name} deleted; what reached the lake stays")


@router.get("/streams/{name:path}", response_class=HTMLResponse)
async def stream(request: Request, name: str, who: Browser, state: State) -> Response:
    try:
        view = await state.run(Registry(state.directory).stream, name, who.name, who.admin)
    except UserError as err:
        return page(request, "error.html", who=who, error=str(err), status=err.status)
    preview = {"columns": [], "rows": [], "note": "raw stream: bytes, no rows to show"}
    if view.kind == "records" and view.dataset and not who.local:
        try:
            preview = await state.run(state.catalog.preview, view.dataset, who.name, who.admin, 20)
        except UserError as err:
            preview = {"columns": [], "rows": [], "note": str(err)}
    return page(request, "stream.html", who=who, s=view, preview=preview, ago=ago)
