"""The API page's Swagger UI, served from the installed package: a hub may have no internet,
and a careful operator's browser loads nothing from elsewhere."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from lakehub.server.web.portal.base import page

router = APIRouter(include_in_schema=False)
FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "lakehub.css": "text/css",  # LakeHub's look, for the portal and JupyterHub's pages
    "charts.js": "text/javascript",  # the portal's charts, drawn with uPlot (MIT, vendored)
    "uplot.min.js": "text/javascript",
    "uplot.min.css": "text/css",
}
LOOK = Path(__file__).parent.parent / "look"
LOOK_FILES = {"lakehub.css", "charts.js", "uplot.min.js", "uplot.min.css"}


@cache
def _static() -> Path:
    spec = importlib.util.find_spec("fastapi_offline")  # its static files only
    if spec is None or not spec.submodule_search_locations:
        raise HTTPException(404, "Swagger UI is not installed (the fastapi-offline package)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@router.get("/docs", response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:
    return page(request, "docs.html", who=None)


@router.get("/assets/{name}")
async def asset(name: str) -> FileResponse:
    if name not in FILES:
        raise HTTPException(404, f"no asset named {name!r}")
    folder = LOOK if name in LOOK_FILES else _static()
    return FileResponse(
        folder / name,
        media_type=FILES[name],
        headers={"Cache-Control": "public, max-age=86400"},
    )
