"""Per-user compute clusters: ``/api/compute`` for users, ``/api/internal/compute-*`` for engines.

Each engine (``AppState.compute``: ``dask``, ``spark``) keeps the contract of
:mod:`lakehub.server.compute.base`; every start, from the API, the SDK or a notebook's own
``dask_gateway.Gateway()``, is planned here against the owner's limits
(:mod:`lakehub.server.compute.plan`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from lakehub.server.compute.base import Cluster, ClusterRequest, ComputeError, Engine
from lakehub.server.compute.plan import plan
from lakehub.server.web.auth import person
from lakehub.server.web.deps import Admin, LocalAdmin, State, User
from lakehub.server.web.schema import UPSTREAM
from lakehub.server.web.state import AppState
from lakehub.sizes import parse_size

router = APIRouter(prefix="/api", tags=["compute"], responses=UPSTREAM)


class ClusterIn(BaseModel):
    workers: int = Field(2, ge=0, le=10_000)
    cores: float = Field(1, gt=0)
    memory: str | int = "2 GiB"  # per worker: bytes, or "4 GiB"
    idle_timeout: float | None = Field(None, gt=0)
    connect: bool = Field(False, description="Spark: a Spark Connect server holds the driver")


def _engine(state: AppState, kind: str) -> Engine:
    engine = state.compute.get(kind)
    if engine is None:
        raise HTTPException(
            404,
            f"no compute engine {kind!r}; there are: {', '.join(sorted(state.compute)) or 'none'}",
        )
    return engine


async def call(state: AppState, fn: Any, *args: Any) -> Any:
    """An engine's answer; its refusal (:class:`ComputeError`) as an HTTP error."""
    try:
        return await state.run(fn, *args)
    except ComputeError as err:
        raise HTTPException(err.status, str(err)) from None


async def clusters_of(state: AppState, owner: str | None) -> tuple[list[Cluster], list[str]]:
    """The owner's clusters of every kind (everyone's for None), and why an engine could not
    answer (if one could not)."""
    found: list[Cluster] = []
    errors: list[str] = []
    for kind, engine in state.compute.items():
        try:
            found += await state.run(engine.list, owner)
        except ComputeError as err:
            errors.append(f"{kind}: {err}")
    return found, errors


@router.get("/compute")
async def list_clusters(who: User, state: State) -> list[dict[str, Any]]:
    """Your clusters of every kind, with their dashboards."""
    found, errors = await clusters_of(state, person(who, "clusters"))
    if errors:
        raise HTTPException(503, "; ".join(errors))
    return [c.as_dict() for c in found]


@router.get("/compute-pool")
async def pooled_clusters(who: Admin, state: State) -> list[dict[str, Any]]:
    """Clusters started ahead of any request, nobody's yet (administrators only)."""
    found: list[Cluster] = []
    for engine in state.compute.values():
        found += await state.run(engine.pooled)
    return [c.as_dict() for c in found]


@router.post("/compute/{kind}", status_code=201)
async def start_cluster(kind: str, body: ClusterIn, who: User, state: State) -> dict[str, Any]:
    engine = _engine(state, kind)
    try:
        memory = body.memory if isinstance(body.memory, int) else parse_size(body.memory)
    except ValueError as err:
        raise HTTPException(400, f"memory: {err}") from None
    if body.connect and kind != "spark":
        raise HTTPException(400, "connect is for Spark clusters")
    request = ClusterRequest(
        workers=body.workers,
        cores=body.cores,
        memory=memory,
        idle_timeout=body.idle_timeout,
        connect=body.connect,
    )
    cluster: Cluster = await call(state, engine.start, person(who, "clusters"), request)
    return cluster.as_dict()


@router.delete("/compute/{kind}/{name}", status_code=204)
async def stop_cluster(kind: str, name: str, who: User, state: State) -> Response:
    engine = _engine(state, kind)
    mine = {c.name for c in await call(state, engine.list, person(who, "clusters"))}
    if name not in mine:
        raise HTTPException(404, f"you have no {kind} cluster named {name!r}")
    await call(state, engine.stop, who.name, name)
    return Response(status_code=204)


# engines -------------------------------------------------------------------------------------
class PlanIn(BaseModel):
    kind: str
    worker_cores: float
    worker_memory: int
    idle_timeout: float | None = None
    head_cores: float = 0  # the scheduler's (or master's)
    head_memory: int = 0
    running: list[dict[str, Any]] = Field(default_factory=list)  # the engine's own clusters


@router.post("/internal/compute-plan/{name}", include_in_schema=False)
async def compute_plan(
    name: str, body: PlanIn, who: LocalAdmin, state: State, response: Response
) -> dict[str, Any]:
    """The caps of a new cluster, or a 4xx that says why not. Engines only."""
    admin = await state.run(state.directory_admin_flag, name)
    running = await state.running_everywhere(body.kind, body.running)
    if body.kind == "dask" and await state.run(state.environments.path, "dask") is None:
        raise HTTPException(
            409,
            "the 'dask' environment is not built yet (see 'lakehub "
            "environment ls'); try again in a moment",
        )
    fn = partial(
        plan,
        state.settings,
        state.policies,
        name,
        admin,
        body.kind,
        body.worker_cores,
        body.worker_memory,
        running,
        body.idle_timeout,
        body.head_cores,
        body.head_memory,
    )
    response.headers["Cache-Control"] = "no-store"
    result: dict[str, Any] = (await call(state, fn)).as_dict()
    return result


@router.get("/internal/compute-env/{name}", include_in_schema=False)
async def compute_env(
    name: str, who: LocalAdmin, state: State, response: Response
) -> dict[str, str]:
    """The owner's lake credentials and MLflow token for a cluster's processes. Engines only."""
    creds = await state.run(state.directory.credentials, name)
    response.headers["Cache-Control"] = "no-store"
    return {
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
        "AWS_ENDPOINT_URL": creds.endpoint_url,
        "LAKEHUB_BUCKET": creds.bucket,
        **await state.run(state.mlflow_env, name),
    }
