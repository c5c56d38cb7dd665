"""Notebook servers seen from the control plane: idle timeouts and Prometheus metrics."""

from __future__ import annotations

import hmac
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel

from lakehub.server.notebooks import culling, metrics, records
from lakehub.server.serving import metrics as serving_metrics
from lakehub.server.vault import read_or_create
from lakehub.server.web.auth import principal
from lakehub.server.web.deps import State, User
from lakehub.server.web.schema import Instant

router = APIRouter()


def metrics_token(state_dir: Path) -> str:
    """A token that may read ``/metrics`` and nothing else (``state/metrics.token``, 0600)."""
    return read_or_create(state_dir / "metrics.token")


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


@router.get("/metrics", include_in_schema=False)
async def prometheus(request: Request, state: State) -> Response:
    """Prometheus text format; for administrators and the metrics token only."""
    header = request.headers.get("authorization", "")
    given = header.partition(" ")[2].strip().encode()
    expected = metrics_token(state.settings.state_dir).encode()
    if not (given and hmac.compare_digest(given, expected)):
        who = await principal(request)
        if not who.admin:
            raise HTTPException(403, "administrators and the metrics token only")
    hub_text, running = await state.hub.metrics(), await state.hub.ready_servers()
    body = metrics.render(hub_text, running, culling.cull_count(state.settings.run_dir))
    body += serving_metrics.render(state.serving.by_id.values())
    return Response(body, media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})
