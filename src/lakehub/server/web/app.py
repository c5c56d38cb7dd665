"""The control plane's app factory: ``uvicorn --factory lakehub.server.web.app:create_app``."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lakehub.server.identity.users import UserError
from lakehub.server.jobs.base import JobsError
from lakehub.server.lake.base import LakeUnavailable
from lakehub.server.models.base import ModelsError
from lakehub.server.notebooks.jupyterhub_api import HubAPIError
from lakehub.server.ops.base import OpsError
from lakehub.server.platform import Platform
from lakehub.server.publish.base import PublishError
from lakehub.server.serving.base import ServingError
from lakehub.server.web import auth, guards
from lakehub.server.web.api import (
    account,
    ailib,
    compute,
    connections,
    datasets,
    jobs,
    mlflow,
    models,
    notebooks,
    ops,
    published,
    quotas,
    servers,
    serving,
    spaces,
    spark,
    streams,
    tasks,
    users,
    variables,
)
from lakehub.server.web.portal import account as account_pages
from lakehub.server.web.portal import admin as admin_pages
from lakehub.server.web.portal import base as portal_base
from lakehub.server.web.portal import catalog, docs, home, uploads
from lakehub.server.web.portal import compute as compute_pages
from lakehub.server.web.portal import connections as connection_pages
from lakehub.server.web.portal import experiments as experiment_pages
from lakehub.server.web.portal import jobs as job_pages
from lakehub.server.web.portal import monitoring as monitoring_pages
from lakehub.server.web.portal import notebooks as notebook_pages
from lakehub.server.web.portal import policies as policy_pages
from lakehub.server.web.portal import published as published_pages
from lakehub.server.web.portal import serving as serving_pages
from lakehub.server.web.portal import spaces as space_pages
from lakehub.server.web.portal import streams as stream_pages
from lakehub.server.web.portal import variables as variable_pages
from lakehub.server.web.requests import CountRequests, RequestCounts
from lakehub.server.web.routing import Room
from lakehub.server.web.schema import ERRORS
from lakehub.server.web.signup_limit import SignupLimit

log = logging.getLogger("lakehub.api")


def create_app(platform: Platform | None = None) -> FastAPI:
    """The control plane over ``platform`` (built from the settings and the running hub when
    not given: ``uvicorn --factory`` calls it so). The app's lifespan starts the platform's
    background loops and closes it; a test that drives the app without its lifespan starts
    what it needs itself."""
    state = platform or Platform.build()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the event loop answers model endpoints: background threads (quota measurement,
        # builds) hand the interpreter back every 0.5 ms, not 5 (a request's tail waits less)
        sys.setswitchinterval(0.0005)
        await state.start()
        yield
        await state.close()

    # The proxy forwards paths unchanged, so every route lives under the service prefix.
    base = state.prefix.rstrip("/")
    app = FastAPI(
        title="LakeHub API",
        version="0.1.0",
        docs_url=None,  # served by the docs router, with its assets from the package
        redoc_url=None,
        openapi_url=f"{base}/openapi.json",
        lifespan=lifespan,
        dependencies=[Depends(guards.no_lone_surrogates)],
    )
    app.state.lh = state
    s = state.settings
    app.state.signup_limit = SignupLimit(s.signup_per_address, s.signup_per_minute)
    routers = (
        auth.router,
        # the JSON API
        users.router,
        spaces.router,
        quotas.router,
        datasets.router,
        connections.router,
        variables.router,
        notebooks.router,
        servers.router,
        compute.router,
        spark.router,
        streams.router,
        tasks.router,
        account.router,
        mlflow.router,
        models.router,
        serving.router,
        ailib.router,
        jobs.router,
        jobs.notices_router,
        published.router,
        ops.router,
        # the portal
        home.router,
        account_pages.router,
        admin_pages.router,
        space_pages.router,
        catalog.router,
        uploads.router,
        connection_pages.router,
        variable_pages.router,
        notebook_pages.router,
        policy_pages.router,
        compute_pages.router,
        stream_pages.router,
        experiment_pages.router,
        serving_pages.router,
        job_pages.router,
        published_pages.router,
        monitoring_pages.router,
        docs.router,
    )
    for router in routers:  # each in a room of its own: tried only by the paths it has
        app.include_router(Room(router, base), prefix=base, responses=ERRORS)
    app.add_exception_handler(RequestValidationError, _as_page(guards.validation_error))
    app.add_exception_handler(StarletteHTTPException, _as_page(guards.http_error))
    app.state.requests = RequestCounts()
    app.add_middleware(CountRequests, counts=app.state.requests)
    app.add_middleware(guards.NoSniff)
    app.add_middleware(serving.ServingDoor, prefix=state.prefix)  # before the router: fast

    for domain in (UserError, ModelsError, JobsError, PublishError, ServingError, OpsError):
        app.add_exception_handler(domain, _domain_error)

    @app.exception_handler(LakeUnavailable)
    async def _lake_down(request: Request, err: LakeUnavailable) -> Response:
        return JSONResponse({"detail": str(err)}, status_code=503)

    @app.exception_handler(HubAPIError)
    async def _hub_down(request: Request, err: HubAPIError) -> Response:
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    @app.exception_handler(auth.LoginRequired)
    async def _login(request: Request, err: auth.LoginRequired) -> Response:
        if request.method != "GET":
            return RedirectResponse(state.prefix, 303)
        return auth.login_redirect(request)

    return app


async def _domain_error(request: Request, err: Exception) -> Response:
    """An area's refusal: its message, with the status it carries."""
    return JSONResponse({"detail": str(err)}, status_code=getattr(err, "status", 400))


def _as_page(handler: Callable[[Request, Exception], Awaitable[Response]]) -> Any:
    """A browser on a portal page gets an error page in LakeHub's look; everyone else gets
    ``handler``'s JSON."""

    async def handle(request: Request, err: Exception) -> Response:
        if not portal_base.wants_page(request):
            return await handler(request, err)
        if isinstance(err, RequestValidationError):
            fields = sorted({str(e["loc"][-1]) for e in err.errors() if e.get("loc")})
            return portal_base.error_page(
                request,
                422,
                "Missing or not valid: " + ", ".join(fields) + ". Go back and check the form.",
            )
        assert isinstance(err, StarletteHTTPException)
        plain = await handler(request, err)  # its headers (Allow, WWW-Authenticate) still hold
        if err.status_code < 400:
            return plain
        detail = err.detail if isinstance(err.detail, str) else "This request was refused."
        if err.status_code == 404 and detail == "Not Found":
            detail = f"There is no page at {request.url.path}."
        elif err.status_code == 405:
            detail = f"{request.method} is not how this page is used."
        shown = portal_base.error_page(request, err.status_code, detail)
        for name in ("allow", "www-authenticate", "retry-after"):
            if name in plain.headers:
                shown.headers[name] = plain.headers[name]
        return shown

    return handle
