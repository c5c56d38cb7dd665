"""The portal's compute: stopping a cluster from the home page, and a Spark cluster's UI (master,
workers, applications) through the front door, for its owner only."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, HTTPException, Request, Response

from lakehub.client import tls_context
from lakehub.server.web.api.compute import call, stop_cluster
from lakehub.server.web.api.spark import engine
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back

router = APIRouter(include_in_schema=False)


@router.post("/compute/{kind}/{name}/stop")
async def stop_from_portal(kind: str, name: str, who: Browser, state: State) -> Response:
    try:
        await stop_cluster(kind, name, who, state)
    except HTTPException as err:
        return back(state, "", error=str(err.detail))
    return back(state, "", msg=f"Stopping {kind} cluster {name[:12]}.")


_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-encoding",
    "content-length",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
}


@router.get("/compute/spark/{name}/ui/{path:path}", include_in_schema=False)
async def spark_ui(name: str, path: str, request: Request, who: Browser, state: State) -> Response:
    """The cluster's Spark UI (master, workers, applications), for its owner only."""
    info = await call(state, engine(state).connect, who.name, name)
    url = f"{info['ui_url']}/{path}"
    async with httpx.AsyncClient(timeout=30, verify=tls_context()) as client:
        try:
            upstream = await client.get(url, params=request.query_params)
        except httpx.TransportError as err:
            raise HTTPException(502, f"the Spark UI does not answer: {err}") from None
    headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
    return Response(upstream.content, upstream.status_code, headers=headers)
