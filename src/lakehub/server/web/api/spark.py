"""What Spark needs beyond ``/api/compute``: the owner's connection details and the notebook
server hooks (clusters living with a server). The Spark UI is a portal page
(:mod:`lakehub.server.web.portal.compute`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel

from lakehub.server.compute.base import ClusterRequest
from lakehub.server.compute.spark_standalone import SparkEngine
from lakehub.server.web.api.compute import call
from lakehub.server.web.auth import person
from lakehub.server.web.deps import LocalAdmin, State, User
from lakehub.server.web.schema import UPSTREAM
from lakehub.server.web.state import AppState

router = APIRouter(tags=["compute"], responses=UPSTREAM)


def engine(state: AppState) -> SparkEngine:
    found = state.compute.get("spark")
    if not isinstance(found, SparkEngine):
        raise HTTPException(404, "Spark is not enabled on this hub")
    return found


@router.get("/api/compute/spark/{name}/connect")
async def connect(name: str, who: User, state: State, response: Response) -> dict[str, Any]:
    """Master URL, secret, executors' Python and jars of one of your clusters; with a Spark
    Connect server, its ``remote`` address and ``token`` too. Yours only."""
    info: dict[str, Any] = await call(state, engine(state).connect, person(who, "clusters"), name)
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
    env: dict[str, str] = await call(state, engine(state).start_for_server, name, request)
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
