"""The portal's streams: what arrives (rate, bytes, last event), what reached the lake (lag),
errors, and a preview of record streams."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from lakehub.server.identity.users import UserError
from lakehub.server.ingest.registry import Registry
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import page

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


@router.get("/streams", response_class=HTMLResponse)
async def streams(request: Request, who: Browser, state: State) -> Response:
    found = await state.run(Registry(state.directory).streams, who.name, who.admin)
    s, p = state.settings, state.runtime.ports
    return page(
        request,
        "streams.html",
        who=who,
        streams=found,
        ago=ago,
        forward=f"{s.ingest_host}:{p.get('forward')}",
        http=f"{s.ingest_host}:{p.get('ingest_http')}",
    )


@router.get("/streams/{name}", response_class=HTMLResponse)
async def stream(request: Request, name: str, who: Browser, state: State) -> Response:
    try:
        view = await state.run(Registry(state.directory).stream, name, who.name, who.admin)
    except UserError as err:
        resp = page(request, "error.html", who=who, error=str(err))
        resp.status_code = err.status
        return resp
    preview = {"columns": [], "rows": [], "note": "raw stream: bytes, no rows to show"}
    if view.kind == "records" and view.dataset and not who.local:
        try:
            preview = await state.run(state.catalog.preview, view.dataset, who.name, who.admin, 20)
        except UserError as err:
            preview = {"columns": [], "rows": [], "note": str(err)}
    return page(request, "stream.html", who=who, s=view, preview=preview, ago=ago)
