"""The portal's model endpoints and AI library: deploy a version from its model's page, see what
serves and every rollout, scale, canary, follow an alias, make and revoke tokens (a new token is
shown once, in the answer to its POST, never in a URL), try an endpoint with a prefilled
request; the AI library's ten templates, deployed or retrained on a dataset in one click."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from lakehub.server.models.base import Reader
from lakehub.server.serving.base import ServingError
from lakehub.server.serving.gateway import NoReplica
from lakehub.server.web.auth import Principal
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, page

router = APIRouter(include_in_schema=False)


def _reader(who: Principal) -> Reader:
    if who.local:
        raise HTTPException(400, "the local administrator has no endpoints: log in as a user")
    return Reader(who.name, who.admin)


def _where(name: str) -> str:
    return f"endpoints/{quote(name, safe='')}"


async def _detail(state: State, who: Principal, name: str) -> Any:
    try:
        return await state.run(state.serving.detail, _reader(who), name)
    except ServingError as err:
        raise HTTPException(err.status, str(err)) from None


async def _example(state: State, ep: Any) -> str:
    """The endpoint's input example as an OIP request, pretty; empty when it has none."""
    route = state.serving.route(ep.owner, ep.path.rsplit("/", 1)[-1])
    if route is None:
        return ""
    try:
        out = await route.pool.forward(b"GET", b"/lakehub/example", [], b"")
    except NoReplica:
        return ""
    doc = json.loads(out.body or b"{}") if out.status == 200 else {}
    return json.dumps(doc, indent=1) if doc else ""


async def _endpoint_page(
    request: Request, who: Principal, state: State, name: str, status: int = 200, **ctx: Any
) -> Response:
    ep = await _detail(state, who, name)
    ctx.setdefault("request_text", await _example(state, ep))
    route = state.serving.route(ep.owner, ep.path.rsplit("/", 1)[-1])
    return page(
        request,
        "endpoint.html",
        status=status,
        who=who,
        ep=ep,
        base=f"{state.runtime.front_url}{state.prefix}{ep.path}",
        model_name=ep.path.rsplit("/", 1)[-1],
        stats=route.pool.stats if route else None,
        latency_chart=_latency_chart(route.pool.stats) if route else "",
        **ctx,
    )


def _latency_chart(stats: Any) -> str:
    """The share of requests answered within each latency bound, for ``look/charts.js``."""
    from lakehub.server.serving.gateway import BUCKETS

    count = sum(stats.buckets)
    if not count:
        return ""
    bounds, shares, seen = [], [], 0
    for bound, n in zip(BUCKETS, stats.buckets, strict=False):
        seen += n
        bounds.append(bound * 1000)
        shares.append(round(100 * seen / count, 2))
        if seen == count:  # the rest of the axis would be a flat 100%
            break
    doc = {
        "title": f"Answered within (ms), % of {count} requests since the hub started",
        "x": "ms",
        "series": [{"label": "% of requests", "x": bounds, "y": shares}],
    }
    return json.dumps(doc).replace("<", "\\u003c")


@router.get("/endpoints", response_class=HTMLResponse)
async def endpoints(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    found = await state.run(state.serving.visible, _reader(who))
    return page(request, "endpoints.html", who=who, endpoints=found, msg=msg, error=error)


@router.get("/endpoints/{name}", response_class=HTMLResponse)
async def endpoint(
    request: Request, name: str, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    return await _endpoint_page(request, who, state, name, msg=msg, error=error)


@router.post("/endpoints", response_class=HTMLResponse)
async def deploy(
    request: Request,
    who: Browser,
    state: State,
    model: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    replicas: Annotated[int, Form()] = 1,
    follow: Annotated[str, Form()] = "",
) -> Response:
    from lakehub.server.web.api.serving import default_name

    try:
        ep = await state.serving.create(
            _reader(who),
            name.strip() or default_name(model),
            model.strip(),
            replicas,
            follow=bool(follow),
        )
    except ServingError as err:
        form = {"model": model, "name": name, "replicas": replicas, "follow": bool(follow)}
        return page(
            request, "endpoint_new.html", status=err.status, who=who, form=form, error=str(err)
        )
    return back(state, _where(ep.name), msg=f"Deploying {ep.model} ({ep.ref}) as {ep.name}.")


@router.get("/endpoints-new", response_class=HTMLResponse)
async def deploy_form(request: Request, who: Browser, model: str = "") -> Response:
    return page(request, "endpoint_new.html", who=who, form={"model": model, "replicas": 1})


@router.post("/endpoints/{name}/change")
async def change(
    name: str,
    who: Browser,
    state: State,
    replicas: Annotated[int | None, Form()] = None,
    canary_model: Annotated[str, Form()] = "",
    canary_share: Annotated[int | None, Form()] = None,
    clear_canary: Annotated[str, Form()] = "",
    follow: Annotated[str, Form()] = "",
) -> Response:
    changes: dict[str, Any] = {}
    if replicas is not None:
        changes["replicas"] = replicas
    if clear_canary:
        changes["canary"] = None
    elif canary_model.strip():
        changes["canary"] = {"model": canary_model.strip(), "share": canary_share or 10}
    elif canary_share is not None:
        changes["canary_share"] = canary_share
    if follow:
        changes["follow"] = follow == "on"
    try:
        await state.serving.update(_reader(who), name, changes)
    except ServingError as err:
        return back(state, _where(name), error=str(err))
    return back(state, _where(name), msg="Changed: new replicas take over once they are ready.")


@router.post("/endpoints/{name}/undeploy")
async def undeploy(name: str, who: Browser, state: State) -> Response:
    try:
        await state.serving.delete(_reader(who), name)
    except ServingError as err:
        return back(state, _where(name), error=str(err))
    return back(state, "endpoints", msg=f"{name} stopped.")


@router.post("/endpoints/{name}/tokens", response_class=HTMLResponse)
async def new_token(
    request: Request, name: str, who: Browser, state: State, label: Annotated[str, Form()] = ""
) -> Response:
    try:
        view, token = await state.run(state.serving.new_token, _reader(who), name, label)
    except ServingError as err:
        return await _endpoint_page(request, who, state, name, err.status, error=str(err))
    return await _endpoint_page(request, who, state, name, new_token=token, token_name=view.name)


@router.post("/endpoints/{name}/tokens/{token_id}/revoke")
async def revoke(name: str, token_id: int, who: Browser, state: State) -> Response:
    try:
        await state.run(state.serving.revoke_token, _reader(who), name, token_id)
    except ServingError as err:
        return back(state, _where(name), error=str(err))
    return back(state, _where(name), msg=f"Token {token_id} revoked.")


@router.post("/endpoints/{name}/try", response_class=HTMLResponse)
async def try_it(
    request: Request, name: str, who: Browser, state: State, body: Annotated[str, Form()] = ""
) -> Response:
    """Send the request as typed to the endpoint, as the person logged in; show the answer."""
    ep = await _detail(state, who, name)
    route = state.serving.route(ep.owner, ep.path.rsplit("/", 1)[-1])
    path = f"/v2/models/{ep.path.rsplit('/', 1)[-1]}/infer".encode()
    if route is None:
        raise HTTPException(404, f"endpoint {name!r} does not exist")
    try:
        out = await route.pool.forward(
            b"POST", path, [(b"content-type", b"application/json")], body.encode()
        )
        status, text = out.status, out.body.decode(errors="replace")
        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text), indent=1)
    except NoReplica as err:
        status, text = 503, str(err)
    return await _endpoint_page(
        request, who, state, name, request_text=body, answer=text, answer_status=status
    )


@router.get("/ai-library", response_class=HTMLResponse)
async def library(request: Request, who: Browser, state: State) -> Response:
    reader = _reader(who)
    found = state.library.catalog(reader)
    datasets = await state.run(lambda: state.catalog.search(reader.name, reader.admin))
    return page(request, "ailib.html", who=who, templates=found, datasets=datasets)


@router.post("/ai-library/{name}/deploy")
async def library_deploy(
    name: str, who: Browser, state: State, dataset: Annotated[str, Form()] = ""
) -> Response:
    try:
        await state.library.deploy(_reader(who), name, dataset.strip() or None)
    except ServingError as err:
        return back(state, "ai-library", error=str(err))
    what = f"on {dataset}" if dataset.strip() else "on its sample"
    return back(state, "ai-library", msg=f"Training {name} {what}; it serves as ailib-{name} next.")
