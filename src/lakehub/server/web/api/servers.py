"""Notebook servers, environments, sizes and policies: the JSON API.

Users start, list and stop their own servers here (``/api/servers``) and see what they may pick
(``/api/notebooks/options``). Administrators manage environments, sizes and policies. The hub's
spawner asks ``/api/internal/spawn-plan`` before every start, whichever way the start came (this
API, the hub's form or the hub's own REST API), so every rule is checked in one place.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from lakehub.server.identity.envvars import EnvVars
from lakehub.server.identity.users import valid_name
from lakehub.server.notebooks import culling, limits, records
from lakehub.server.notebooks.policy import Choices, PolicyView
from lakehub.server.notebooks.registry import EnvView
from lakehub.server.web.auth import Principal, person
from lakehub.server.web.deps import Admin, LocalAdmin, State, User
from lakehub.server.web.schema import Instant
from lakehub.server.web.state import AppState

router = APIRouter(prefix="/api", tags=["notebooks"])
DEFAULT = "default"  # how the API names a user's unnamed server


def server_name(name: str) -> str:
    """The hub's name for a server: ``default`` is the unnamed one."""
    if name in ("", DEFAULT):
        return ""
    valid_name(name, "server")
    return name


# ---------------------------------------------------------------------------------------------
class SizeOut(BaseModel):
    name: str
    cpus: float
    memory: int
    description: str


class OptionsOut(BaseModel):
    environments: list[EnvView]
    sizes: list[SizeOut]
    default_environment: str | None
    default_size: str | None
    max_servers: int
    max_memory: int | None
    idle_timeout: int


async def active_servers(state: AppState) -> dict[str, dict[str, dict[str, Any]]]:
    return await state.active_servers()


async def options_for(state: AppState, who: Principal) -> tuple[Choices, list[EnvView]]:
    choices = await state.run(state.policies.choices, who.name, who.admin)
    envs = await state.run(state.environments.all)
    return choices, [e for e in envs if e.name in choices.environments]


@router.get("/notebooks/options")
async def my_options(who: User, state: State) -> OptionsOut:
    """The environments and sizes you may pick, your defaults and your quotas."""
    c, envs = await options_for(state, who)
    return _options(c, envs)


@router.get("/internal/spawn-options/{name}", include_in_schema=False)
async def spawn_options(name: str, who: LocalAdmin, state: State) -> OptionsOut:
    """For the hub's spawn form. The hub only."""
    admin = await state.run(state.directory_admin_flag, name)
    c, envs = await options_for(state, Principal(name=name, admin=admin))
    return _options(c, envs)


def _options(c: Choices, envs: list[EnvView]) -> OptionsOut:
    return OptionsOut(
        environments=envs,
        sizes=[SizeOut(**z.__dict__) for z in c.sizes],
        default_environment=c.default_environment,
        default_size=c.default_size,
        max_servers=c.max_servers,
        max_memory=c.max_memory,
        idle_timeout=c.cull_timeout,
    )


class ServerIn(BaseModel):
    name: str = DEFAULT
    environment: str | None = None
    size: str | None = None
    # saved as your variables (secret ones encrypted, never shown again) before the start
    env: dict[str, Any] = Field(default_factory=dict, repr=False)


class ServerOut(BaseModel):
    name: str
    ready: bool
    pending: str | None
    url: str
    environment: str | None
    size: str | None
    started: Instant | None
    last_activity: Instant | None
    idle_timeout: int
    cull_at: Instant | None
    limits: str = Field(description="'enforced', or why memory and CPU limits are not")
    memory_kills: int = Field(
        description="processes (usually kernels) stopped for going over "
        "the size's memory since the server started"
    )
    memory_used: int | None = Field(description="bytes the server uses now, kernels included")


async def servers_of(state: AppState, user: str) -> list[ServerOut]:
    model = await state.hub.user(user) or {}
    out = []
    for name, s in sorted((model.get("servers") or {}).items()):
        record = records.read(state.settings.run_dir, user, name)
        timeout = int(record.get("cull_timeout", state.settings.cull_idle_timeout))
        idle = culling.idle_info(s, timeout) or {}
        opts = s.get("user_options") or {}
        key = limits.server_key(user, name)
        cg = limits.of_hub(str(state.settings.data_dir))
        out.append(
            ServerOut(
                name=name or DEFAULT,
                ready=bool(s.get("ready")),
                pending=s.get("pending"),
                url=s.get("url") or "",
                started=s.get("started"),
                environment=record.get("environment") or opts.get("environment"),
                size=record.get("size") or opts.get("size"),
                last_activity=idle.get("last_activity"),
                idle_timeout=timeout,
                cull_at=idle.get("cull_at"),
                limits=record.get("limits", ""),
                memory_kills=await state.run(cg.oom_kills, key),
                memory_used=await state.run(cg.memory_used, key),
            )
        )
    return out


@router.get("/servers")
async def list_servers(who: User, state: State) -> list[ServerOut]:
    """Your servers, running or starting."""
    return await servers_of(state, person(who, "notebook servers"))


@router.post("/servers", status_code=201)
async def start_server(body: ServerIn, who: User, state: State, response: Response) -> ServerOut:
    """Start one of your servers; 201 when it is ready, 202 while it is still starting."""
    user, server = person(who, "notebook servers"), server_name(body.name)
    options = {k: v for k, v in (("environment", body.environment), ("size", body.size)) if v}
    active = await active_servers(state)
    if server in active.get(user, {}):
        raise HTTPException(409, f"server {body.name!r} is already running; stop it first")
    await state.run(state.policies.plan, user, who.admin, server, options, active)
    await save_variables(state, user, body.env)
    ready = await state.hub.start_server(user, server, options)
    if not ready:
        response.status_code = 202
    mine = {s.name: s for s in await servers_of(state, user)}
    if (server or DEFAULT) not in mine:
        raise HTTPException(502, f"server {body.name!r} stopped while starting; see the hub log")
    return mine[server or DEFAULT]


@router.delete("/servers/{name}", status_code=204)
async def stop_server(name: str, who: User, state: State) -> Response:
    user, server = person(who, "notebook servers"), server_name(name)
    if server not in (await state.hub.active_servers()).get(user, {}):
        raise HTTPException(404, f"you have no server named {name!r} running")
    await state.hub.stop_server(user, server)
    return Response(status_code=204)


async def save_variables(state: AppState, user: str, given: dict[str, Any]) -> None:
    """``{NAME: value | {"value": ..., "secret": bool}}``, checked one by one: a bad one stops
    before anything starts (those before it are saved)."""
    variables = EnvVars(state.directory)
    for key, spec in given.items():
        value, secret = (
            (spec.get("value"), spec.get("secret", False))
            if isinstance(spec, dict)
            else (spec, False)
        )
        await state.run(partial(variables.set, user, key, value, secret=bool(secret)))


@router.post("/internal/env/{name}", include_in_schema=False, status_code=204)
async def internal_env(name: str, body: dict[str, Any], who: LocalAdmin, state: State) -> Response:
    """Variables typed into the hub's spawn form, saved as the user's own. The hub only."""
    await save_variables(state, name, body)
    return Response(status_code=204)


class PlanIn(BaseModel):
    server: str = ""
    options: dict[str, Any] = Field(default_factory=dict)


@router.post("/internal/spawn-plan/{name}", include_in_schema=False)
async def spawn_plan(
    name: str, body: PlanIn, who: LocalAdmin, state: State, response: Response
) -> dict[str, Any]:
    """What the hub's spawner runs for one start, or a 4xx that says why not. The hub only."""
    admin = await state.run(state.directory_admin_flag, name)
    active = await active_servers(state)
    plan = await state.run(state.policies.plan, name, admin, body.server, body.options, active)
    response.headers["Cache-Control"] = "no-store"
    return {
        "env": await state.spawn_env(name),
        "environment": plan.environment,
        "path": str(plan.path),
        "size": {"name": plan.size.name, "cpus": plan.size.cpus, "memory": plan.size.memory},
        "cull_timeout": plan.cull_timeout,
    }


# administrators ------------------------------------------------------------------------------
@router.get("/environments")
async def list_environments(who: User, state: State) -> list[EnvView]:
    """Every environment for administrators; the ones you may use for others."""
    if who.admin:
        return await state.run(state.environments.all)
    return (await options_for(state, who))[1]


@router.get("/environments/{name}")
async def get_environment(name: str, who: User, state: State) -> EnvView:
    envs = {e.name: e for e in await list_environments(who, state)}
    if name not in envs:
        raise HTTPException(404, f"no environment named {name!r}")
    return envs[name]


class EnvironmentIn(BaseModel):
    description: str | None = None
    python: str | None = None
    packages: list[str] | None = None


@router.put("/environments/{name}")
async def put_environment(name: str, body: EnvironmentIn, who: Admin, state: State) -> EnvView:
    """Add an environment or change its spec; a changed spec is built in the background, and
    servers keep using the previous build until the new one succeeds."""
    return await state.run(
        state.environments.put, name, body.description, body.python, body.packages, who.name
    )


@router.post("/environments/{name}/build")
async def rebuild_environment(name: str, who: Admin, state: State) -> EnvView:
    return await state.run(state.environments.rebuild, name, who.name)


@router.get("/environments/{name}/log")
async def environment_log(name: str, who: Admin, state: State) -> Response:
    text = await state.run(state.environments.log_text, name)
    return Response(text, media_type="text/plain; charset=utf-8")


@router.delete("/environments/{name}", status_code=204)
async def delete_environment(name: str, who: Admin, state: State) -> Response:
    await state.run(state.environments.delete, name)
    return Response(status_code=204)


@router.get("/sizes")
async def list_sizes(who: User, state: State) -> list[SizeOut]:
    if who.admin:
        return [SizeOut(**z.__dict__) for z in await state.run(state.policies.sizes)]
    return [SizeOut(**z.__dict__) for z in (await options_for(state, who))[0].sizes]


class SizeIn(BaseModel):
    cpus: float
    memory: int = Field(description="bytes")
    description: str = ""


@router.put("/sizes/{name}")
async def put_size(name: str, body: SizeIn, who: Admin, state: State) -> SizeOut:
    size = await state.run(state.policies.put_size, name, body.cpus, body.memory, body.description)
    return SizeOut(**size.__dict__)


@router.delete("/sizes/{name}", status_code=204)
async def delete_size(name: str, who: Admin, state: State) -> Response:
    await state.run(state.policies.delete_size, name)
    return Response(status_code=204)


@router.get("/notebook-policies")
async def list_policies(who: Admin, state: State) -> list[PolicyView]:
    return await state.run(state.policies.all)


@router.put("/notebook-policies/{kind}/{name}")
async def put_policy(
    kind: str, name: str, body: dict[str, Any], who: Admin, state: State
) -> PolicyView:
    """Set some fields of a group's (or a user's) policy; ``null`` clears a field."""
    return await state.run(state.policies.put, kind, name, body, who.name)


@router.delete("/notebook-policies/{kind}/{name}", status_code=204)
async def delete_policy(kind: str, name: str, who: Admin, state: State) -> Response:
    await state.run(state.policies.delete, kind, name, who.name)
    return Response(status_code=204)
