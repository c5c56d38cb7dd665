"""Notebook servers seen from the control plane: their idle timeouts."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from lakehub.server.notebooks import culling, records
from lakehub.server.web.deps import State, User
from lakehub.server.web.schema import Instant

router = APIRouter()


class ServerOut(BaseModel):
    running: bool
    ready: bool = False
    started: Instant | None = None
    last_activity: Instant | None = None
    idle_timeout: int  # seconds; 0: never stopped for being idle
    cull_at: Instant | None = None  # stopped at (or soon after) this time if it stays idle


@router.get("/api/me/server", tags=["notebooks"])
async def my_server(who: User, state: State) -> ServerOut:
    record = records.read(state.settings.run_dir, who.name, "") if not who.local else {}
    timeout = int(record.get("cull_timeout", state.settings.cull_idle_timeout))
    model = await state.hub.user(who.name) if not who.local else None
    server = ((model or {}).get("servers") or {}).get("")
    idle = culling.idle_info(server, timeout)
    if server is None or idle is None:
        return ServerOut(running=False, idle_timeout=timeout)
    return ServerOut(
        running=True, ready=bool(server.get("ready")), started=server.get("started"), **idle
    )
