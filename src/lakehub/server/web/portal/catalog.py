"""The portal's dataset catalog: search, describe, preview, register, forget."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from lakehub.server.identity.users import UserError
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, page

router = APIRouter(include_in_schema=False)


@router.get("/datasets", response_class=HTMLResponse)
async def datasets(
    request: Request,
    who: Browser,
    state: State,
    q: str = "",
    tag: str = "",
    msg: str = "",
    error: str = "",
    path: str = "",
) -> Response:
    """The catalog; ``path`` (from the lake browser's "Register" link) fills the register form."""
    return await _catalog(request, who, state, q=q, tag=tag, msg=msg, error=error, path=path)


async def _catalog(
    request: Request,
    who: Browser,
    state: State,
    *,
    status: int = 200,
    q: str = "",
    tag: str = "",
    path: str = "",
    draft: dict[str, str] | None = None,
    **kw: str,
) -> Response:
    found = await state.run(lambda: state.catalog.search(who.name, who.admin, q, tag))
    return page(
        request,
        "datasets.html",
        who=who,
        datasets=found,
        q=q,
        tag=tag,
        draft=draft if draft is not None else draft_of(path),
        **kw,
        status=status,
    )


FORMATS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".zarr": "zarr",
}


def draft_of(path: str) -> dict[str, str]:
    """A register form filled from a lake path: a name from its last part, a format from its
    suffix (raw when unknown)."""
    if not path.startswith("s3://"):
        return {}
    last = path.rstrip("/").rsplit("/", 1)[-1]
    stem, dot, suffix = last.rpartition(".")
    fmt = FORMATS.get(dot + suffix.lower(), "raw") if dot else "raw"
    name = "".join(ch if ch.isalnum() else "_" for ch in (stem or last).lower()).strip("_")
    return {"path": path, "name": name[:64], "format": fmt}


@router.post("/datasets")
async def register(
    request: Request,
    who: Browser,
    state: State,
    name: Annotated[str, Form()],
    path: Annotated[str, Form()],
    format: Annotated[str, Form()],
    description: Annotated[str, Form()] = "",
    tags: Annotated[str, Form()] = "",
) -> Response:
    try:
        await state.run(
            lambda: state.catalog.register(
                name.strip(),
                path.strip(),
                format,
                who.name,
                description=description,
                tags=[t for t in tags.replace(",", " ").split() if t],
            )
        )
    except UserError as err:  # the form again, as it was typed
        typed = {"name": name, "path": path, "format": format, "tags": tags}
        return await _catalog(
            request,
            who,
            state,
            status=err.status,
            error=str(err),
            draft={**typed, "description": description},
        )
    return back(state, f"datasets/{quote(name.strip())}", msg=f"registered {name}")


@router.get("/datasets/{name:path}", response_class=HTMLResponse)
async def dataset(
    request: Request, name: str, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    return await _dataset(request, name, who, state, msg=msg, error=error)


async def _dataset(
    request: Request,
    name: str,
    who: Browser,
    state: State,
    *,
    status: int = 200,
    edit: dict[str, str] | None = None,
    **kw: str,
) -> Response:
    try:
        view = await state.run(state.catalog.get, name, who.name, who.admin)
    except UserError as err:
        return page(request, "error.html", who=who, error=str(err), status=err.status)
    try:
        preview = await state.run(state.catalog.preview, name, who.name, who.admin, 20)
    except UserError as err:
        preview = {"columns": [], "rows": [], "note": str(err)}
    typed = edit or {"description": view.description, "tags": " ".join(view.tags)}
    return page(
        request, "dataset.html", who=who, d=view, preview=preview, edit=typed, **kw, status=status
    )


@router.post("/datasets/{name:path}/edit")
async def edit(
    request: Request,
    name: str,
    who: Browser,
    state: State,
    description: Annotated[str, Form()] = "",
    tags: Annotated[str, Form()] = "",
) -> Response:
    """A dataset's description and tags, by whoever may write where it lives."""
    try:
        await state.run(
            lambda: state.catalog.update(
                name,
                who.name,
                who.admin,
                description=description.strip(),
                tags=[t for t in tags.replace(",", " ").split() if t],
            )
        )
    except UserError as err:  # the form again, as it was typed
        typed = {"description": description, "tags": tags}
        return await _dataset(
            request, name, who, state, status=err.status, edit=typed, error=str(err)
        )
    return back(state, f"datasets/{quote(name)}", msg="saved")


@router.post("/datasets/{name:path}/refresh")
async def refresh(name: str, who: Browser, state: State) -> Response:
    """Look at the files again: new files, partitions, columns and rows."""
    try:
        view = await state.run(state.catalog.refresh, name, who.name, who.admin)
    except UserError as err:
        return back(state, f"datasets/{quote(name)}", error=str(err))
    rows = "rows not counted" if view.row_count is None else f"{view.row_count} rows"
    files = f"{view.file_count} file{'' if view.file_count == 1 else 's'}"
    return back(state, f"datasets/{quote(name)}", msg=f"refreshed: {files}, {rows}")


@router.post("/datasets/{name:path}/delete")
async def forget(name: str, who: Browser, state: State) -> Response:
    try:
        await state.run(state.catalog.delete, name, who.name, who.admin)
    except UserError as err:
        return back(state, f"datasets/{quote(name)}", error=str(err))
    return back(state, "datasets", msg=f"{name} removed from the catalog; its files stay")
