"""The control plane's app factory: ``uvicorn --factory lakehub.server.web.app:create_app``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lakehub.server.catalog import Catalog
from lakehub.server.compute import engines
from lakehub.server.config import load_settings
from lakehub.server.db import Database
from lakehub.server.identity.spaces import Spaces
from lakehub.server.identity.users import Directory, UserError
from lakehub.server.ingest import registry as ingest_registry
from lakehub.server.lake import open_lake
from lakehub.server.lake.base import LakeUnavailable
from lakehub.server.notebooks.policy import Policies
from lakehub.server.notebooks.registry import Environments
from lakehub.server.quotas import Quotas
from lakehub.server.runtime import load_runtime, tokens
from lakehub.server.vault import Vault
from lakehub.server.web import auth, guards
from lakehub.server.web.jhub import HubAPIError, JupyterHubAPI
from lakehub.server.web.routers import (
    api,
    catalog_pages,
    compute,
    connections,
    datasets,
    envvars,
    notebook_pages,
    notebooks,
    portal,
    quotas,
    servers,
    spaces,
    spark,
    stream_pages,
    streams,
    tasks,
    uploads,
)
from lakehub.server.web.schema import ERRORS
from lakehub.server.web.state import AppState

log = logging.getLogger("lakehub.api")


def build_state() -> AppState:
    settings = load_settings()
    runtime = load_runtime(settings)
    if runtime is None:
        raise RuntimeError(f"no running hub in {settings.data_dir}: start it with 'lakehub up'")
    tok = tokens(settings)
    vault = Vault(settings.state_dir)
    db = Database(settings.database_url)
    # the receivers take a revoked grant, a deleted source or user into account at once
    db.on_change.append(partial(ingest_registry.mark_changed, settings.ingest_dir))
    lake = open_lake(settings, runtime, tok)
    directory = Directory(db, vault, lake)
    environments = Environments(db, settings.envs_dir, settings.notebook_python)
    state = AppState(
        settings=settings,
        runtime=runtime,
        tokens=tok,
        vault=vault,
        db=db,
        directory=directory,
        hub=JupyterHubAPI(runtime.hub_api_url, tok.service),
        spaces=Spaces(directory),
        catalog=Catalog(directory),
        quotas=Quotas(directory),
        environments=environments,
        policies=Policies(
            directory, environments, settings.cull_idle_timeout, settings.notebook_max_servers
        ),
    )
    state.compute.update(engines(compute.engine_context(state)))
    return state


def create_app(state: AppState | None = None) -> FastAPI:
    """The control plane over ``state`` (built from the settings and the running hub when not
    given: ``uvicorn --factory`` calls it so), so a test can hand it a platform of its own."""
    state = state or build_state()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.quotas.start()
        await state.run(state.environments.sync_builtins)
        state.environments.start()
        for engine in state.compute.values():
            await state.run(engine.open)
        notebooks.metrics_token(state.settings.state_dir)  # there for Prometheus from the start
        yield
        await state.run(state.quotas.stop)
        await state.run(state.environments.stop)
        await state.hub.aclose()
        for engine in state.compute.values():
            await state.run(engine.close)
        state.db.engine.dispose()

    # The proxy forwards paths unchanged, so every route lives under the service prefix.
    base = state.prefix.rstrip("/")
    app = FastAPI(
        title="LakeHub API",
        version="0.1.0",
        docs_url=f"{base}/docs",
        openapi_url=f"{base}/openapi.json",
        lifespan=lifespan,
        dependencies=[Depends(guards.no_lone_surrogates)],
    )
    app.state.lh = state
    routers = (
        auth.router,
        api.router,
        spaces.router,
        quotas.router,
        datasets.router,
        connections.router,
        connections.pages,
        portal.router,
        catalog_pages.router,
        uploads.router,
        envvars.router,
        envvars.pages,
        notebooks.router,
        servers.router,
        notebook_pages.pages,
        compute.router,
        compute.pages,
        spark.router,
        streams.router,
        stream_pages.router,
        tasks.router,
    )
    for router in routers:
        app.include_router(router, prefix=base, responses=ERRORS)
    app.add_exception_handler(RequestValidationError, guards.validation_error)
    app.add_exception_handler(StarletteHTTPException, guards.http_error)
    app.add_middleware(guards.NoSniff)

    @app.exception_handler(UserError)
    async def _user_error(request: Request, err: UserError) -> Response:
        return JSONResponse({"detail": str(err)}, status_code=err.status)

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
