"""Monitoring (``/api/ops``) and the metrics page the store scrapes (``/metrics``).

Queries go through here: a user's read only the series labelled with their name (the store
enforces it), an administrator's read everything. Dashboards are the data of
``server/ops/dashboards.yaml``; alerts are a user's own, or every alert for administrators;
silences are an administrator's, or a user's over their own alerts.
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from lakehub.server.ops.base import Series
from lakehub.server.web.auth import principal
from lakehub.server.web.deps import Admin, State, User
from lakehub.server.web.schema import INT64

router = APIRouter(tags=["monitoring"])
MAX_RANGE_S = 400 * 86400
Expr = Annotated[str, Query(min_length=1, max_length=4000, description="PromQL")]


def _series(found: list[Series]) -> list[dict[str, Any]]:
    return [{"labels": s.labels, "points": s.points} for s in found]


@router.get("/metrics", include_in_schema=False)
async def prometheus(request: Request, state: State) -> Response:
    """Prometheus text format; for administrators and the metrics token only."""
    given = request.headers.get("authorization", "").partition(" ")[2].strip().encode()
    if not (given and hmac.compare_digest(given, state.tokens.metrics.encode())):
        who = await principal(request)
        if not who.admin:
            raise HTTPException(403, "administrators and the metrics token only")
    body = await state.metrics_page() + request.app.state.requests.page()
    return Response(
        body, media_type="text/plain; version=0.0.4", headers={"Cache-Control": "no-store"}
    )


def _json(data: Any) -> Response:
    """Plain JSON, written at once; range queries' points go out as the store wrote them."""
    return Response(orjson.dumps(data), media_type="application/json")


@router.get("/api/ops/query", response_model=None)
async def query(
    who: User,
    state: State,
    expr: Expr,
    time_: Annotated[float | None, Query(alias="time", description="unix seconds")] = None,
    start: Annotated[float | None, Query(description="unix seconds: a range query")] = None,
    end: Annotated[float | None, Query()] = None,
    step: Annotated[float, Query(gt=0, le=86400, description="seconds")] = 60,
) -> Response:
    """PromQL over the store: an instant (``time``, default now) or a range (``start``,
    ``end``: now by default). A user reads only their own series."""
    mon = state.monitoring
    if start is None:
        found = await state.run(mon.query, expr, time_, who.name, who.admin)
        return _json({"series": _series(found)})
    end = time.time() if end is None else end
    if not 0 < end - start <= MAX_RANGE_S:
        raise HTTPException(400, "start must be before end, at most 400 days before it")
    if (end - start) / step > 11000:
        raise HTTPException(400, "too many points: at most 11,000 per series; raise the step")
    ranged = await state.run(mon.query_range_json, expr, start, end, step, who.name, who.admin)
    series = [{"labels": s.labels, "points": orjson.Fragment(s.points)} for s in ranged]
    return _json({"series": series, "step": step})


@router.get("/api/ops/dashboards")
async def dashboards(who: User, state: State) -> list[dict[str, Any]]:
    return [
        {"name": b.name, "title": b.title, "description": b.description, "audience": b.audience}
        for b in state.monitoring.boards.values()
        if b.visible_to(who.admin)
    ]


@router.get("/api/ops/dashboards/{name}", response_model=None)
async def dashboard(
    who: User,
    state: State,
    name: str,
    hours: Annotated[float, Query(gt=0, le=24 * 400, description="how far back")] = 1.0,
    end: Annotated[float | None, Query(description="unix seconds; now by default")] = None,
) -> Response:
    """A dashboard's panels with their series. Hidden dashboards answer 404, like missing."""
    mon = state.monitoring
    board = mon.boards.get(name)
    if board is None or not board.visible_to(who.admin):
        raise HTTPException(404, f"no dashboard {name!r}")
    end = time.time() if end is None else end
    start = end - hours * 3600
    interval = state.settings.metrics_interval
    panels = await board.data(mon.store, who.name, start, end, interval, as_json=True)
    out = {"name": board.name, "title": board.title, "start": start, "end": end, "panels": panels}
    return _json(out)


@router.get("/api/ops/alerts")
async def alerts(
    who: User,
    state: State,
    firing: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """Newest first, resolved ones too (the history): a user's own, or all for admins."""
    return await state.run(state.monitoring.alerts.history, who.name, who.admin, firing, limit)


class SilenceIn(BaseModel):
    rule: str = Field("", max_length=64, description="the rule silenced; '': every rule")
    matchers: dict[str, str] = Field(
        default_factory=dict, description="labels the alerts must have, e.g. component: lake"
    )
    reason: str = Field(max_length=1000)
    hours: float = Field(1.0, gt=0, le=90 * 24)


@router.get("/api/ops/silences")
async def silences(who: User, state: State) -> list[dict[str, Any]]:
    return await state.run(state.monitoring.alerts.silences, who.name, who.admin)


@router.post("/api/ops/silences", status_code=201)
async def silence(who: User, state: State, body: SilenceIn) -> dict[str, Any]:
    a = state.monitoring.alerts
    seconds = int(body.hours * 3600)
    return await state.run(
        a.silence, who.name, who.admin, body.rule, body.matchers, body.reason, seconds
    )


@router.delete("/api/ops/silences/{silence_id}")
async def end_silence(
    who: User, state: State, silence_id: Annotated[int, Path(ge=1, le=INT64)]
) -> dict[str, Any]:
    return await state.run(state.monitoring.alerts.end_silence, who.name, who.admin, silence_id)


class ExportIn(BaseModel):
    day: date | None = Field(None, description="the UTC day exported [default: yesterday]")


@router.post("/api/ops/export")
async def export(who: Admin, state: State, body: ExportIn) -> dict[str, Any]:
    """Write a day's operations data (metrics, alerts, events) to the space opsdata now, as
    the daily export does; rows per table. Administrators only."""
    if not state.monitoring.running:
        raise HTTPException(503, state.monitoring.store.reason)  # type: ignore[attr-defined]
    day = body.day or (datetime.now(UTC).date() - timedelta(days=1))
    rows = await state.run(state.open_data.export, day)
    return {"day": day.isoformat(), "rows": rows, "bucket": "space-opsdata"}


class FindingsIn(BaseModel):
    day: date
    points: list[tuple[float, str, float]] = Field(
        default_factory=list, max_length=100_000, description="[unix seconds, component, score]"
    )


@router.post("/api/ops/findings", status_code=204)
async def findings(who: Admin, state: State, body: FindingsIn) -> Response:
    """The anomaly job's findings: each as ``lakehub_ops_anomalies{component}`` at its minute,
    in the platform's metrics (the overview draws them). Administrators (the job's owner)."""
    await state.run(state.monitoring.findings, body.points)
    return Response(status_code=204)


@router.get("/api/ops/status")
async def status(who: User, state: State) -> dict[str, Any]:
    """Whether the store runs, and its settings."""
    mon, s = state.monitoring, state.settings
    out: dict[str, Any] = {"store": mon.running, "reason": getattr(mon.store, "reason", "")}
    if who.admin:
        out |= {
            "interval_s": s.metrics_interval,
            "retention": s.metrics_retention,
            "resolution_s": s.metrics_resolution,
            "remote_write": len(s.metrics_remote_write),
            "alert_interval_s": s.alert_interval,
            "rules": [r.name for r in mon.alerts.rules],
            "last_rule_error": mon.alerts.last_error,
        }
    return out
