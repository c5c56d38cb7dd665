"""Model endpoints: the JSON API that deploys and changes them (``/api/endpoints``), and the door
their callers use (``/serving/<owner>/<name>/...``: the Open Inference Protocol v2 and MLflow's
``/invocations``), answered before the app's router, with the protocol's own error shape
(``{"error": "..."}``).

Who may call: the endpoint's readers (its owner, a space's members with a grant, an
administrator) with their JupyterHub token, or anyone holding one of its application tokens
(``Authorization: Bearer lhe_...``). Anonymous calls are refused (401), and an endpoint a caller
may not see answers as one that does not exist (404).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from lakehub.server.models.base import Reader
from lakehub.server.serving import metrics as serving_metrics
from lakehub.server.serving.gateway import NoReplica
from lakehub.server.serving.views import EndpointDetail, EndpointView, TokenView
from lakehub.server.web.auth import Principal, person, principal
from lakehub.server.web.deps import State, User

router = APIRouter(prefix="/api/endpoints", tags=["endpoints"])
MAX_BODY = 256 * 2**20
CALLER_TTL = 10.0  # seconds a token's owner is remembered (a revocation forgets at once)
SERVER = {"name": "lakehub", "version": "2", "extensions": ["binary_tensor_data"]}
VERSIONED = re.compile(r"v2/models/([^/]+)/versions/([^/]+)(/.*)?")


class Canary(BaseModel):
    model: str = Field(description="another version of the same model: name@alias or name/N")
    share: int = Field(10, ge=0, le=100, description="percent of requests")


class DeployIn(BaseModel):
    model: str = Field(description="name@alias, name/N, or name (its latest version)")
    name: str | None = Field(None, description="the endpoint's name (default: the model's)")
    replicas: int = Field(1, ge=1, le=16)
    size: str | None = Field(None, description="a size you may use (default: your default)")
    environment: str = Field("", description="empty: the environment the model was trained in")
    follow_alias: bool = Field(False, description="roll out the alias's new version on a move")
    batching: bool = False


class EndpointChange(BaseModel):
    model: str | None = None
    replicas: int | None = Field(None, ge=1, le=16)
    size: str | None = None
    follow_alias: bool | None = None
    batching: bool | None = None
    canary: Canary | None = Field(None, description="a canary to start (see clear_canary)")
    canary_share: int | None = Field(None, ge=0, le=100)
    clear_canary: bool = Field(False, description="stop the canary")


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="what will use it")


class TokenCreated(TokenView):
    token: str = Field(description="shown this once: LakeHub keeps only its hash")


def _reader(who: Principal) -> Reader:
    return Reader(person(who, "endpoints"), who.admin)


def default_name(model: str) -> str:
    bare = model.removeprefix("models:/").split("@")[0].split("/")[0].split(".")[-1]
    return re.sub(r"[^a-z0-9-]+", "-", bare.lower()).strip("-")[:63] or "model"


@router.get("")
async def endpoints(who: User, state: State) -> list[EndpointView]:
    """Endpoints you can call (yours, your spaces')."""
    return await state.run(state.serving.visible, _reader(who))


@router.post("", status_code=201)
async def deploy(body: DeployIn, who: User, state: State) -> EndpointView:
    """Deploy a model version: answers at once (status ``deploying``); the endpoint serves
    when its replicas are ready and warmed up (``status`` ``serving``) or says why not."""
    return await state.serving.create(
        _reader(who),
        body.name or default_name(body.model),
        body.model,
        body.replicas,
        body.size,
        body.environment,
        body.follow_alias,
        body.batching,
    )


@router.get("/{name}")
async def endpoint(name: str, who: User, state: State) -> EndpointDetail:
    """An endpoint, its rollouts (newest first) and, to those who may change it, its tokens."""
    return await state.run(state.serving.detail, _reader(who), name)


@router.patch("/{name}")
async def change(name: str, body: EndpointChange, who: User, state: State) -> EndpointView:
    """Change what serves or how: every change that needs new replicas is rolled out without
    a failed request."""
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"clear_canary"})
    if "follow_alias" in changes:
        changes["follow"] = changes.pop("follow_alias")
    if body.clear_canary:
        changes["canary"] = None
    return await state.serving.update(_reader(who), name, changes)


@router.delete("/{name}", status_code=204)
async def undeploy(name: str, who: User, state: State) -> Response:
    """Stop the endpoint (requests in flight are answered first) and forget it."""
    await state.serving.delete(_reader(who), name)
    return Response(status_code=204)


@router.get(
    "/{name}/metrics",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def endpoint_metrics(name: str, who: User, state: State) -> Response:
    """The endpoint's figures in Prometheus text format: requests by status, latency
    histogram, requests waiting in the gateway, replicas ready (``lakehub_endpoint_*``)."""
    route = await state.run(state.serving.figures, _reader(who), name)
    return Response(serving_metrics.render([route]), media_type=serving_metrics.CONTENT_TYPE)


@router.get("/{name}/kserve")
async def kserve(name: str, who: User, state: State, namespace: str = "lakehub") -> dict[str, Any]:
    """The endpoint as a KServe ``InferenceService`` (the production route on Kubernetes):
    apply it in ``namespace``, where the service account ``lakehub-lake`` holds S3 keys that
    read the model's bucket."""
    return await state.run(state.serving.kserve, _reader(who), name, namespace)


@router.post("/{name}/tokens", status_code=201)
async def new_token(name: str, body: TokenIn, who: User, state: State) -> TokenCreated:
    """An application token that opens this endpoint only (shown once)."""
    view, token = await state.run(state.serving.new_token, _reader(who), name, body.name)
    return TokenCreated(**view.model_dump(), token=token)


@router.delete("/{name}/tokens/{token_id}", status_code=204)
async def revoke_token(name: str, token_id: int, who: User, state: State) -> Response:
    """Revoke a token: refused from the next request on."""
    await state.run(state.serving.revoke_token, _reader(who), name, token_id)
    return Response(status_code=204)


# the door ---------------------------------------------------------------------------------------
class ServingDoor:
    """ASGI: requests under ``<prefix>serving/`` go to the endpoints, the rest to the app."""

    def __init__(self, app: Any, prefix: str) -> None:
        self.app = app
        self.base = prefix + "serving/"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.base):
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status, headers, body, route = await self.answer(scope, receive, started)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if route is not None:  # the endpoint's figures: what its callers saw
            route.pool.stats.observe(status, time.perf_counter() - started)

    async def answer(
        self, scope: Any, receive: Any, started: float
    ) -> tuple[int, list[Any], bytes, Any]:
        """The answer (status, headers, body) and the endpoint's route, if there is one."""
        state = scope["app"].state.lh
        owner, _, rest = scope["path"][len(self.base) :].partition("/")
        name, _, rest = rest.partition("/")
        route = state.serving.route(owner, name)
        if route is None:
            return (*_error(404, f"no endpoint {owner}/{name}"), None)
        refused = await _refused(state, scope, route)
        if refused is not None:
            return (*_error(*refused), route)
        pool = route.pool
        if rest == "v2/health/live":
            return (*_json(200, {"live": True}), route)
        if rest == "v2/health/ready":
            ready = bool(pool.ready())
            return (*_json(200 if ready else 503, {"ready": ready}), route)
        if rest in ("v2", "v2/"):
            return (*_json(200, SERVER), route)
        version = None
        m = VERSIONED.fullmatch(rest)
        if m is not None:
            if not m.group(2).isdigit() or int(m.group(2)) not in pool.versions():
                return (*_error(404, f"version {m.group(2)} of {name!r} is not serving"), route)
            version = int(m.group(2))
        if not (rest.startswith("v2/models/") or rest == "invocations"):
            return (*_error(404, f"no such path: /{rest}"), route)
        body = await _body(receive)
        if body is None:
            return (*_error(413, f"bodies are limited to {MAX_BODY >> 20} MiB"), route)
        passed = [
            (k, v)
            for k, v in scope["headers"]
            if k in (b"content-type", b"inference-header-content-length")
        ]
        path = ("/" + rest).encode()
        if scope.get("query_string"):
            path += b"?" + scope["query_string"]
        pool.stats.waiting += 1
        try:
            out = await pool.forward(scope["method"].encode(), path, passed, body, version)
        except NoReplica as err:
            message = f"endpoint {owner}/{name} has no ready replica now: {err}"
            status, headers, doc = _error(503, message)
            return status, [*headers, (b"retry-after", b"1")], doc, route
        finally:
            pool.stats.waiting -= 1
        if rest.endswith("/infer") or rest == "invocations":
            took = time.perf_counter() - started
            state.serving.samples.offer(route, out.version, out.status, took, body, out.body)
        headers = [*out.headers, (b"x-lakehub-version", str(out.version).encode())]
        if not any(k == b"content-type" for k, _ in headers):
            headers.append((b"content-type", b"application/json"))
        return out.status, headers, out.body, route


async def _refused(state: Any, scope: Any, route: Any) -> tuple[int, str] | None:
    header = ""
    for k, v in scope["headers"]:
        if k == b"authorization":
            header = v.decode("latin-1")
            break
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() not in ("bearer", "token") or not token:
        return 401, "authentication required: send 'Authorization: Bearer <token>'"
    if token.startswith("lhe_"):
        if state.serving.token_opens(token, route):
            return None
        return 401, "this token is not valid for this endpoint (revoked, or another's)"
    key = hashlib.sha256(token.encode()).hexdigest()
    cached = state.serving.callers.get(key)
    if cached is not None and cached[1] > time.monotonic():
        reader = cached[0]
    else:
        try:
            who = await principal(Request(scope))
        except HTTPException as err:
            return err.status_code, str(err.detail)
        reader = Reader(who.name, who.admin or who.local)
        if len(state.serving.callers) > 10_000:  # many one-off tokens: start again
            state.serving.callers.clear()
        state.serving.callers[key] = (reader, time.monotonic() + CALLER_TTL)
    known = state.serving.known(reader, route)
    if known is None:
        known = await state.run(state.serving.may_call, reader, route)
    return None if known else (404, f"no endpoint {route.owner}/{route.name}")


async def _body(receive: Any) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _json(status: int, doc: Any) -> tuple[int, list[Any], bytes]:
    return status, [(b"content-type", b"application/json")], json.dumps(doc).encode()


def _error(status: int, message: str) -> tuple[int, list[Any], bytes]:
    status, headers, body = _json(status, {"error": message})
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="lakehub"'))
    return status, headers, body
