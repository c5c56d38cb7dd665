"""What Spark needs beyond ``/api/compute``: the owner's connection details, the Spark UI through
the front door (owner only) and the notebook server hooks (clusters living with a server)."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel

from lakehub.server.compute.base import ClusterRequest, ComputeError
from lakehub.server.compute.spark_standalone import SparkEngine
from lakehub.server.web.auth import Principal, browser_user, person
from lakehub.server.web.routers.api import LocalAdmin, State, User
from lakehub.server.web.schema import UPSTREAM
from lakehub.server.web.state import AppState

router = APIRouter(tags=["compute"], responses=UPSTREAM)
Browser = Annotated[Principal, Depends(browser_user)]


def engine(state: AppState) -> SparkEngine:
    found = state.compute.get("spark")
    if not isinstance(found, SparkEngine):
        raise HTTPException(404, "Spark is not enabled on this hub")
    return found


async def _call(state: AppState, fn: Any, *args: Any) -> Any:
    try:
        return await state.run(fn, *args)
    except ComputeError as err:
        raise HTTPException(err.status, str(err)) from None


@router.get("/api/compute/spark/{name}/connect")
async def connect(name: str, who: User, state: State, response: Response) -> dict[str, Any]:
    """Master URL, secret, executors' Python and jars of one of your clusters. Yours only."""
    info: dict[str, Any] = await _call(state, engine(state).connect, person(who, "clusters"), name)
    response.headers["Cache-Control"] = "no-store"
    return info


class ServerIn(BaseModel):
    server: str = ""


@router.post("/api/internal/spark-server/{name}", include_in_schema=False)
async def server_started(
    name: str, body: ServerIn, who: LocalAdmin, state: State, response: Response
) -> dict[str, str]:
    """A cluster for a notebook server starting; its variables. The hub only."""
    request = ClusterRequest(workers=1, cores=1, memory=2 << 30, server=body.server)
    env: dict[str, str] = await _call(state, engine(state).start_for_server, name, request)
    response.headers["Cache-Control"] = "no-store"
    return env


@router.post("/api/internal/server-stopped/{name}", include_in_schema=False)
async def server_stopped(
    name: str, body: ServerIn, who: LocalAdmin, state: State
) -> dict[str, list[str]]:
    """A notebook server stopped: the clusters living with it stop too. The hub only."""
    return {
        kind: await state.run(eng.stop_for_server, name, body.server)
        for kind, eng in state.compute.items()
    }


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
    info = await _call(state, engine(state).connect, who.name, name)
    url = f"{info['ui_url']}/{path}"
    async with httpx.AsyncClient(timeout=30) as client:
        try:
            upstream = await client.get(url, params=request.query_params)
        except httpx.TransportError as err:
            raise HTTPException(502, f"the Spark UI does not answer: {err}") from None
    headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
    return Response(upstream.content, upstream.status_code, headers=headers)
