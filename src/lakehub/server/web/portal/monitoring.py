"""The portal's monitoring: the dashboards (drawn in the page from ``server/ops/dashboards.yaml``),
the alerts with their history, and silences."""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from lakehub.server.ops.base import OpsError
from lakehub.server.web.auth import Principal
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, page

router = APIRouter(include_in_schema=False)
RANGES = {"1 hour": 1.0, "6 hours": 6.0, "1 day": 24.0, "7 days": 168.0, "30 days": 720.0}


def _spec(panel: dict[str, Any]) -> str:
    """A line panel's JSON for ``look/charts.js``, safe inside <script type="application/json">."""
    doc = {
        "title": "",
        "time": True,
        "x": "time",
        "unit": panel["unit"],
        "series": [
            {"label": s["name"], "x": [p[0] for p in s["points"]], "y": [p[1] for p in s["points"]]}
            for s in panel["series"]
        ],
    }
    return orjson.dumps(doc).decode().replace("<", "\\u003c")


def _last(panel: dict[str, Any]) -> list[tuple[str, str]]:
    """A stat panel's latest values, written for people in the panel's unit."""
    return [
        (s["name"], _fmt(panel["unit"], float(s["points"][-1][1])))
        for s in panel["series"]
        if s["points"]
    ]


def _fmt(unit: str, v: float) -> str:
    if unit == "percent":
        return f"{v:.0%}"
    if unit == "seconds":
        return f"{v * 1000:.3g} ms" if v < 1 else f"{v:.3g} s"
    base, prefixes = (
        (1024, ["B", "KiB", "MiB", "GiB", "TiB"])
        if unit == "bytes"
        else (1000, ["", "K", "M", "G", "T"])
    )
    i = 0
    while abs(v) >= base and i < len(prefixes) - 1:
        v, i = v / base, i + 1
    text = f"{v:.3g} {prefixes[i]}".strip()
    return text + ("/s" if unit == "persec" else "")


@router.get("/monitoring", response_class=HTMLResponse)
async def index(request: Request, who: Browser, state: State) -> Response:
    mon = state.monitoring
    boards = [b for b in mon.boards.values() if b.visible_to(who.admin)]
    firing = await state.run(mon.alerts.history, who.name, who.admin, True, 50)
    return page(
        request,
        "monitoring.html",
        who=who,
        boards=boards,
        firing=firing,
        store=mon.running,
        reason=getattr(mon.store, "reason", ""),
    )


@router.get("/monitoring/{name}", response_class=HTMLResponse)
async def dashboard(
    request: Request, name: str, who: Browser, state: State, hours: float = 1.0
) -> Response:
    mon = state.monitoring
    board = mon.boards.get(name)
    if board is None or not board.visible_to(who.admin):
        raise HTTPException(404, f"no dashboard {name!r}")
    hours = min(max(hours, 0.05), 24 * 400)
    end = time.time()
    error, panels = "", []
    try:
        start, interval = end - hours * 3600, state.settings.metrics_interval
        panels = await board.data(mon.store, who.name, start, end, interval)
    except OpsError as err:
        error = str(err)
    for p in panels:
        p["spec"], p["last"] = _spec(p), _last(p)
    return page(
        request,
        "dashboard.html",
        who=who,
        board=board,
        panels=panels,
        hours=hours,
        ranges=RANGES,
        error=error,
    )


@router.get("/alerts", response_class=HTMLResponse)
async def alerts(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    return await _alerts_page(request, who, state, {}, msg=msg, error=error)


async def _alerts_page(
    request: Request,
    who: Principal,
    state: State,
    form: dict[str, Any],
    status: int = 200,
    **ctx: Any,
) -> Response:
    a = state.monitoring.alerts
    history = await state.run(a.history, who.name, who.admin, False, 300)
    silences = await state.run(a.silences, who.name, who.admin)
    rules = sorted({r.name for r in a.rules})
    return page(
        request,
        "alerts.html",
        status=status,
        who=who,
        history=history,
        silences=silences,
        rules=rules,
        form=form,
        **ctx,
    )


@router.post("/alerts/silence", response_class=HTMLResponse)
async def silence(
    request: Request,
    who: Browser,
    state: State,
    rule: Annotated[str, Form()] = "",
    labels: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    hours: Annotated[str, Form()] = "1",
) -> Response:
    form = {"rule": rule, "labels": labels, "reason": reason, "hours": hours}
    try:
        matchers = {}
        for part in filter(None, (p.strip() for p in labels.split(","))):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise OpsError(f"labels are name=value, separated by commas: {part!r}", 422)
            matchers[key.strip()] = value.strip()
        try:
            seconds = int(float(hours) * 3600)
        except ValueError:
            raise OpsError(f"hours must be a number, not {hours!r}", 422) from None
        args = (who.name, who.admin, rule.strip(), matchers, reason, seconds)
        made = await state.run(state.monitoring.alerts.silence, *args)
    except OpsError as err:
        return await _alerts_page(request, who, state, form, err.status, error=str(err))
    return back(state, "alerts", msg=f"Silence {made['id']} holds until the time shown below.")


@router.post("/alerts/silences/{silence_id}/end")
async def end_silence(silence_id: int, who: Browser, state: State) -> Response:
    try:
        await state.run(state.monitoring.alerts.end_silence, who.name, who.admin, silence_id)
    except OpsError as err:
        raise HTTPException(err.status, str(err)) from None
    return back(state, "alerts", msg=f"Silence {silence_id} ended.")
