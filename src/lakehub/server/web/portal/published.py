"""The portal's published notebooks: publish one (uploaded, from the lake, or a job run's
output), see yours with their links, views and versions, change who may open them and until
when, give one a new link, unpublish it; and the pages themselves (``pub/<link>``).

A page is served with ``Content-Security-Policy: sandbox`` and nothing but inline styles and
data images allowed: it runs no script and has no origin of its own, so nothing in a notebook
can read or use the session of whoever opens it (its HTML was cleaned when rendered as well).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from lakehub.server.jobs.base import JobsError
from lakehub.server.models.base import ModelsError, Reader
from lakehub.server.publish.base import PublishError
from lakehub.server.publish.published import MAX_NOTEBOOK
from lakehub.server.schema import to_ms
from lakehub.server.web.auth import Principal, principal
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, page

router = APIRouter(include_in_schema=False)
PAGE_POLICY = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)
FIELDS = ("name", "lake", "title", "audience", "space", "expires")


@cache
def _css() -> str:
    """LakeHub's look and the notebook's, inlined: a published page loads nothing."""
    look = Path(__file__).parent.parent / "look"
    return "\n".join((look / f).read_text() for f in ("lakehub.css", "notebook.css"))


def _reader(who: Principal) -> Reader:
    if who.local:
        raise HTTPException(400, "the local administrator publishes nothing: log in as a user")
    return Reader(who.name, who.admin)


def _expiry(day: str) -> dict[str, Any]:
    """``YYYY-MM-DD`` (the end of that day, UTC) as the service takes it; empty: never."""
    if not day.strip():
        return {"expires_ms": None}
    try:
        at = datetime.strptime(day.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise PublishError(f"an expiry is a day: YYYY-MM-DD, not {day!r}") from None
    return {"expires_ms": to_ms(at) + 86_400_000 - 1}


def _options(title: str, audience: str, space: str, expires: str) -> dict[str, Any]:
    opts = {"title": title, "audience": audience, "space": space if audience == "space" else ""}
    return {**opts, **_expiry(expires)}


@router.get("/published", response_class=HTMLResponse)
async def published(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    return await _page(request, who, state, {"audience": "hub"}, msg=msg, error=error)


async def _page(
    request: Request,
    who: Principal,
    state: State,
    form: dict[str, Any],
    status: int = 200,
    **ctx: Any,
) -> Response:
    mine = await state.run(state.published.owned, _reader(who))
    shared = await state.run(state.published.shared, _reader(who))
    return page(
        request,
        "published.html",
        status=status,
        who=who,
        mine=mine,
        shared=shared,
        form=form,
        **ctx,
    )


@router.post("/published", response_class=HTMLResponse)
async def publish(
    request: Request,
    who: Browser,
    state: State,
    notebook: UploadFile | None = None,
    name: Annotated[str, Form()] = "",
    lake: Annotated[str, Form()] = "",
    title: Annotated[str, Form()] = "",
    audience: Annotated[str, Form()] = "hub",
    space: Annotated[str, Form()] = "",
    expires: Annotated[str, Form()] = "",
) -> Response:
    form = dict(zip(FIELDS, (name, lake, title, audience, space, expires), strict=True))
    try:
        opts = _options(title, audience, space, expires)
        if notebook is not None and notebook.filename:
            data = await notebook.read(MAX_NOTEBOOK + 1)
            view = await state.run(
                state.published.publish,
                _reader(who),
                name.strip(),
                BytesIO(data),
                len(data),
                f"uploaded {notebook.filename}",
                opts,
            )
        else:
            view = await state.run(
                state.publish_from, _reader(who), name.strip(), {"lake": lake.strip()}, opts
            )
    except (PublishError, ModelsError, JobsError) as err:
        return await _page(request, who, state, form, err.status, error=str(err))
    number = view.versions[0].version
    shown = f"Publishing {view.name}, version {number}: its page is rendered in a moment."
    return back(state, "published", msg=shown)


@router.post("/published-run")
async def publish_run(
    who: Browser,
    state: State,
    job: Annotated[str, Form()],
    run: Annotated[int, Form()],
    name: Annotated[str, Form()],
) -> Response:
    """A job run's output notebook, published for every LakeHub user (from the job's page)."""
    where = f"jobs/{quote(job, safe='')}"
    try:
        source = {"job": job, "run": run}
        view = await state.run(state.publish_from, _reader(who), name, source, {})
    except (PublishError, JobsError) as err:
        return back(state, where, error=str(err))
    return back(state, "published", msg=f"Publishing {view.name} (run {run} of {job}).")


@router.post("/published/{name}/change")
async def change(
    name: str,
    who: Browser,
    state: State,
    title: Annotated[str, Form()] = "",
    audience: Annotated[str, Form()] = "hub",
    space: Annotated[str, Form()] = "",
    expires: Annotated[str, Form()] = "",
) -> Response:
    try:
        opts = _options(title, audience, space, expires)
        await state.run(state.published.update, _reader(who), name, opts)
    except PublishError as err:
        return back(state, "published", error=str(err))
    return back(state, "published", msg=f"{name}: changed.")


@router.post("/published/{name}/link")
async def new_link(name: str, who: Browser, state: State) -> Response:
    try:
        await state.run(state.published.new_link, _reader(who), name)
    except PublishError as err:
        return back(state, "published", error=str(err))
    return back(state, "published", msg=f"{name}: a new link; the old one no longer opens it.")


@router.post("/published/{name}/remove")
async def remove(name: str, who: Browser, state: State) -> Response:
    try:
        await state.run(state.published.delete, _reader(who), name)
    except PublishError as err:
        return back(state, "published", error=str(err))
    return back(state, "published", msg=f"{name}: unpublished.")


# the pages --------------------------------------------------------------------------------------
@router.get("/pub/{link}", response_class=HTMLResponse)
async def latest(request: Request, link: str, state: State) -> Response:
    return await _show(request, link, None, state)


@router.get("/pub/{link}/v/{version}", response_class=HTMLResponse)
async def version(request: Request, link: str, version: int, state: State) -> Response:
    return await _show(request, link, version, state)


async def _show(request: Request, link: str, version: int | None, state: State) -> Response:
    try:
        audience = await state.run(state.published.audience, link)
        who = None
        if audience != "public":  # a login first (then back here), or an API token
            p = await principal(request, browser=True)
            who = None if p.local else Reader(p.name, p.admin)
        shown = await state.run(state.published.page, link, who, version)
    except PublishError as err:
        raise HTTPException(err.status, str(err)) from None
    resp = page(
        request,
        "published_page.html",
        p=shown,
        link=link,
        body=shown.body.decode(),
        css=_css(),
        published=datetime.fromtimestamp(shown.published_at / 1000, UTC),
    )
    resp.headers["Content-Security-Policy"] = PAGE_POLICY
    resp.headers["Referrer-Policy"] = "no-referrer"  # its link is its key: never sent on
    resp.headers["X-Robots-Tag"] = "noindex"
    return resp
