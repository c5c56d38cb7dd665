"""The portal's experiments and models: experiments with their runs (a table paged, sorted and
with its columns picked on the server, so it stays fast at many thousand runs), a run with its
metrics drawn, a few runs side by side, models with versions, lineage and alias history."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from lakehub.server.models.base import ModelsError, Reader
from lakehub.server.models.search import page_token
from lakehub.server.web.auth import Principal
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, page

router = APIRouter(include_in_schema=False)
PAGE = 50
MAX_COMPARE = 8
DEFAULT_METRICS = 4
DEFAULT_PARAMS = 3


def _reader(who: Principal) -> Reader:
    if who.local:
        raise HTTPException(400, "the local administrator has no experiments: log in as a user")
    return Reader(who.name, who.admin)


async def _call(state: State, fn: Any, *args: Any) -> Any:
    try:
        return await state.run(fn, *args)
    except ModelsError as err:
        raise HTTPException(err.status, str(err)) from None


def _chart(title: str, series: list[tuple[str, list[Any], list[Any]]]) -> str:
    """A chart's JSON for ``look/charts.js``, safe inside <script type="application/json">."""
    doc = {
        "title": title,
        "x": "step",
        "series": [{"label": s, "x": x, "y": y} for s, x, y in series],
    }
    return json.dumps(doc).replace("<", "\\u003c")


@router.get("/mlflow/", response_class=HTMLResponse)
async def mlflow_link(request: Request, who: Browser) -> Response:
    """Where the links MLflow's client prints (to its own web UI) land: the same page here."""
    return page(request, "mlflow_link.html", who=who)


@router.get("/experiments", response_class=HTMLResponse)
async def experiments(request: Request, who: Browser, state: State) -> Response:
    found = await _call(state, state.tracking.overview, _reader(who))
    return page(request, "experiments.html", who=who, experiments=found)


@router.get("/experiments/{experiment_id}", response_class=HTMLResponse)
async def experiment(
    request: Request,
    experiment_id: str,
    who: Browser,
    state: State,
    sort: str = "attributes.start_time",
    desc: bool = True,
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    cols: Annotated[list[str] | None, Query()] = None,
    filter: str = "",  # noqa: A002
) -> Response:
    r = _reader(who)
    exp = await _call(state, state.tracking.get_experiment, r, experiment_id)
    metrics, params = await _call(state, state.tracking.keys, r, experiment_id)
    chosen = [
        c
        for c in cols or []
        if c.partition(".")[2] in (metrics if c.startswith("metrics.") else params)
    ]
    if not chosen:
        chosen = [f"metrics.{k}" for k in metrics[:DEFAULT_METRICS]]
        chosen += [f"params.{k}" for k in params[:DEFAULT_PARAMS]]
    token = page_token((page_no - 1) * PAGE) if page_no > 1 else None
    order = [f"{sort} {'DESC' if desc else 'ASC'}"]
    try:
        runs, more = await state.run(
            state.tracking.search_runs,
            r,
            [experiment_id],
            filter,
            "ACTIVE_ONLY",
            PAGE,
            order,
            token,
        )
        error = ""
    except ModelsError as err:  # a filter or sort not understood: the table says why
        runs, more, error = [], None, str(err)
    rows = []
    for run in runs:
        m = {x["key"]: x["value"] for x in run["data"]["metrics"]}
        p = {x["key"]: x["value"] for x in run["data"]["params"]}
        cells = [m.get(c[8:]) if c.startswith("metrics.") else p.get(c[7:]) for c in chosen]
        rows.append({"info": run["info"], "cells": cells})
    return page(
        request,
        "experiment.html",
        who=who,
        exp=exp,
        rows=rows,
        cols=chosen,
        metrics=metrics,
        params=params,
        sort=sort,
        desc=desc,
        page_no=page_no,
        more=bool(more),
        filter=filter,
        error=error,
    )


@router.get("/runs/compare", response_class=HTMLResponse)
async def compare(
    request: Request, who: Browser, state: State, run: Annotated[list[str] | None, Query()] = None
) -> Response:
    r = _reader(who)
    ids = list(dict.fromkeys(run or []))[:MAX_COMPARE]
    if not ids:
        raise HTTPException(400, "pick the runs to compare (up to 8) in an experiment's table")
    runs = [await _call(state, state.tracking.get_run, r, i) for i in ids]
    hist = await _call(state, state.tracking.histories, r, ids)
    keys = sorted({k for h in hist.values() for k, (steps, _) in h.items() if len(steps) > 1})
    charts = [
        (
            k,
            _chart(
                k,
                [
                    (x["info"]["run_name"], *hist[x["info"]["run_id"]][k])
                    for x in runs
                    if k in hist.get(x["info"]["run_id"], {})
                ],
            ),
        )
        for k in keys
    ]
    table = {
        kind: sorted({x["key"] for run in runs for x in run["data"][kind]})
        for kind in ("params", "metrics")
    }
    values = [
        {kind: {x["key"]: x["value"] for x in run["data"][kind]} for kind in ("params", "metrics")}
        for run in runs
    ]
    return page(
        request, "compare.html", who=who, runs=runs, charts=charts, table=table, values=values
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(
    request: Request, run_id: str, who: Browser, state: State, path: str = ""
) -> Response:
    r = _reader(who)
    run = await _call(state, state.tracking.get_run, r, run_id)
    exp = await _call(state, state.tracking.get_experiment, r, run["info"]["experiment_id"])
    hist = (await _call(state, state.tracking.histories, r, [run_id])).get(run_id, {})
    # a metric logged once is a number in the table, not a chart
    charts = [
        (k, _chart(k, [(run["info"]["run_name"], *hist[k])]))
        for k in sorted(hist)
        if len(hist[k][0]) > 1
    ]
    where = f"{exp['experiment_id']}/{run_id}/artifacts/{path.strip('/')}".rstrip("/")
    try:
        bucket, key = await state.run(state.tracking.artifact_place, r, where, False)
        files = await state.run(state.model_files.list, r, bucket, key + "/")
    except ModelsError:
        files = []
    return page(
        request,
        "run.html",
        who=who,
        run=run,
        exp=exp,
        charts=charts,
        files=files,
        path=path.strip("/"),
        where=where,
    )


@router.get("/models", response_class=HTMLResponse)
async def models(request: Request, who: Browser, state: State) -> Response:
    found = await _call(state, state.registry.visible, _reader(who))
    return page(request, "models.html", who=who, models=found)


@router.get("/models/{name}", response_class=HTMLResponse)
async def model(
    request: Request, name: str, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    detail = await _call(state, state.registry.detail, _reader(who), name)
    return page(request, "model.html", who=who, model=detail, msg=msg, error=error)


@router.post("/models/{name}/aliases/{alias}/rollback")
async def rollback(request: Request, name: str, alias: str, who: Browser, state: State) -> Response:
    where = f"models/{quote(name, safe='')}"
    try:
        version = await state.run(state.registry.rollback, _reader(who), name, alias)
    except ModelsError as err:
        return back(state, where, error=str(err))
    return back(state, where, msg=f"@{alias} is back on version {version}")
