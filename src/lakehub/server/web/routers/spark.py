"""What Spark needs beyond ``/api/compute``: the owner's connection details, the Spark UI through
the front door (owner only) and the notebook server hooks (clusters living with a server)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import anyio.from_thread
import httpx
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel

from lakehub.server.compute.base import Cluster, ClusterRequest, ComputeError
from lakehub.server.compute.plan import ComputePlan, plan
from lakehub.server.compute.spark_standalone import HEAD_MEMORY, SparkEngine
from lakehub.server.web.auth import Principal, browser_user, person
from lakehub.server.web.routers.api import LocalAdmin, State, User
from lakehub.server.web.schema import UPSTREAM
from lakehub.server.web.state import AppState

router = APIRouter(tags=["compute"], responses=UPSTREAM)
Browser = Annotated[Principal, Depends(browser_user)]


def make_engine(state: AppState) -> SparkEngine:
    """The hub's Spark engine: clusters from the ``spark`` environment's pyspark, checked
    against the owner's limits, reaching the lake with the owner's keys."""
    directory, environments = state.directory, state.environments

    def lake_env(owner: str) -> dict[str, str]:
        creds = directory.credentials(owner)
        return {
            "AWS_ACCESS_KEY_ID": creds.access_key_id,
            "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
            "AWS_ENDPOINT_URL": creds.endpoint_url,
            "LAKEHUB_BUCKET": creds.bucket,
        }

    def check(owner: str, request: ClusterRequest, mine: list[Cluster]) -> ComputePlan:
        """Runs in a worker thread of the app (engines block): the planner's view of every
        server and cluster comes from the event loop."""
        from lakehub.server.web.routers.compute import running_everywhere

        reported = [{"owner": r.owner, "name": r.name, "memory": r.memory} for r in found.running()]
        running = anyio.from_thread.run(running_everywhere, state, "spark", reported)
        admin = state.directory_admin_flag(owner)
        verdict = plan(
            state.settings,
            state.policies,
            owner,
            admin,
            "spark",
            request.cores,
            request.memory,
            running,
            request.idle_timeout,
            0,
            HEAD_MEMORY,
        )
        if request.workers > verdict.cluster_max_workers:
            raise ComputeError(
                f"you may have up to {verdict.cluster_max_workers} Spark workers "
                f"of this size now (asked: {request.workers})",
                403,
            )
        return verdict

    ui = f"{state.runtime.front_url}{state.prefix}compute/spark"
    found = SparkEngine(
        state.settings,
        lake_env,
        check,
        host=state.settings.compute_bind,
        spark_env=partial(environments.path, "spark"),
        ui_proxy=lambda owner, name: f"{ui}/{name}/ui",
    )
    return found


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
    out: dict[str, list[str]] = {}
    for kind, eng in state.compute.items():
        stop = getattr(eng, "stop_for_server", None)
        if stop is not None:
            out[kind] = await state.run(stop, name, body.server)
    return out


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
