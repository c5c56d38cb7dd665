"""Per-user compute clusters: ``/api/compute`` (list, start, stop) over every engine."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from lakehub.compute.base import Cluster, ClusterRequest, ComputeError, Engine
from lakehub.hub.routers.api import State, User
from lakehub.hub.routers.servers import _person
from lakehub.hub.state import AppState
from lakehub.sizes import parse_size

router = APIRouter(prefix="/api", tags=["compute"])


class ClusterIn(BaseModel):
    workers: int = Field(2, ge=0)
    cores: float = Field(1, gt=0)
    memory: str | int = "2 GiB"  # per worker: bytes, or "4 GiB"
    idle_timeout: float | None = Field(None, gt=0)


def _engine(state: AppState, kind: str) -> Engine:
    engine = state.compute.get(kind)
    if engine is None:
        raise HTTPException(404, f"no compute engine {kind!r}; there are: "
                                 f"{', '.join(sorted(state.compute)) or 'none'}")  # fmt: skip
    return engine


async def _call(state: AppState, fn: Any, *args: Any) -> Any:
    try:
        return await state.run(fn, *args)
    except ComputeError as err:
        raise HTTPException(err.status, str(err)) from None


@router.get("/compute")
async def list_clusters(who: User, state: State) -> list[dict[str, Any]]:
    found: list[Cluster] = []
    for engine in state.compute.values():
        found += await _call(state, engine.list, _person(who))
    return [c.as_dict() for c in found]


@router.post("/compute/{kind}", status_code=201)
async def start_cluster(kind: str, body: ClusterIn, who: User, state: State) -> dict[str, Any]:
    engine = _engine(state, kind)
    try:
        memory = body.memory if isinstance(body.memory, int) else parse_size(body.memory)
    except ValueError as err:
        raise HTTPException(400, f"memory: {err}") from None
    request = ClusterRequest(workers=body.workers, cores=body.cores, memory=memory,
                             idle_timeout=body.idle_timeout)  # fmt: skip
    cluster: Cluster = await _call(state, engine.start, _person(who), request)
    return cluster.as_dict()


@router.delete("/compute/{kind}/{name}", status_code=204)
async def stop_cluster(kind: str, name: str, who: User, state: State) -> Response:
    engine = _engine(state, kind)
    mine = {c.name for c in await _call(state, engine.list, _person(who))}
    if name not in mine:
        raise HTTPException(404, f"you have no {kind} cluster named {name!r}")
    await _call(state, engine.stop, who.name, name)
    return Response(status_code=204)
