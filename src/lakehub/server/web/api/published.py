"""Notebooks published read-only (``/api/published``): a notebook uploaded, in the lake, or a job
run's output becomes a page at ``pub/<link>`` for its audience. A publication is changed by its
owner alone; anyone else gets 404, as for one that does not exist."""

from __future__ import annotations

import tempfile
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from lakehub.server.models.base import Reader
from lakehub.server.publish.base import PublishError
from lakehub.server.publish.published import MAX_NOTEBOOK, PublicationView
from lakehub.server.schema import Instant, to_ms
from lakehub.server.web.auth import Principal, person
from lakehub.server.web.deps import State, User
from lakehub.server.web.schema import INT32

router = APIRouter(prefix="/api/published", tags=["published"])
Audience = Literal["private", "space", "hub", "public"]
Version = Annotated[int, Path(ge=1, le=INT32)]


class PublishOptions(BaseModel):
    title: str | None = Field(None, description="shown on its page (default: its name)")
    audience: Audience | None = Field(
        None, description="who may open it: you, a space's readers, every user, anyone (hub)"
    )
    space: str | None = Field(None, description="with the audience 'space': which")
    expires_at: Instant | None = Field(None, description="its page is turned away from then")


class PublishIn(PublishOptions):
    name: str
    lake: str | None = Field(None, description="a notebook in the lake: s3://bucket/path.ipynb")
    job: str | None = Field(None, description="with run: that run's output notebook")
    run: int | None = Field(None, ge=1, le=2**63 - 1)


def _reader(who: Principal) -> Reader:
    return Reader(person(who, "publications"), who.admin)


def _opts(body: PublishOptions) -> dict[str, Any]:
    opts: dict[str, Any] = {
        k: getattr(body, k) for k in ("title", "audience", "space") if k in body.model_fields_set
    }
    if "expires_at" in body.model_fields_set:  # given as null: it never expires
        opts["expires_ms"] = None if body.expires_at is None else to_ms(body.expires_at)
    return opts


@router.get("")
async def published(
    who: User, state: State, shared: bool = Query(False, description="others', for you")
) -> list[PublicationView]:
    """Yours; with ``shared``, others' published for every user or a space of yours."""
    fn = state.published.shared if shared else state.published.owned
    return await state.run(fn, _reader(who))


@router.post("", status_code=201)
async def publish(body: PublishIn, who: User, state: State) -> PublicationView:
    """Publish (or publish again: a new version) a notebook in the lake or a run's output;
    answers at once, its page is rendered after (``versions[0].state``)."""
    source = {"lake": body.lake, "job": body.job, "run": body.run}
    return await state.run(state.publish_from, _reader(who), body.name, source, _opts(body))


@router.put(
    "/{name}",
    status_code=201,
    openapi_extra={"requestBody": {"content": {"application/x-ipynb+json": {}}, "required": True}},
)
async def upload(
    name: str,
    request: Request,
    who: User,
    state: State,
    title: str | None = None,
    audience: Audience | None = None,
    space: str | None = None,
    expires_at: Instant | None = None,
) -> PublicationView:
    """Publish (or publish again) the notebook in the request's body (at most 200 MB)."""
    given = (("title", title), ("audience", audience), ("space", space))
    opts: dict[str, Any] = {k: v for k, v in given if v is not None}
    if expires_at is not None:
        opts["expires_ms"] = to_ms(expires_at)
    with tempfile.SpooledTemporaryFile(8 * 2**20) as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_NOTEBOOK:
                raise PublishError(f"a notebook of at most {MAX_NOTEBOOK:,} bytes", 413)
            spool.write(chunk)
        spool.seek(0)
        who_ = _reader(who)
        return await state.run(state.published.publish, who_, name, spool, size, "uploaded", opts)


@router.get("/{name}")
async def publication(name: str, who: User, state: State) -> PublicationView:
    return await state.run(state.published.get, _reader(who), name)


@router.patch("/{name}")
async def change(name: str, body: PublishOptions, who: User, state: State) -> PublicationView:
    """Its title, audience, space or expiry (``expires_at: null``: never)."""
    return await state.run(state.published.update, _reader(who), name, _opts(body))


@router.post("/{name}/link")
async def new_link(name: str, who: User, state: State) -> PublicationView:
    """A new link for its page: the old one stops working at once."""
    return await state.run(state.published.new_link, _reader(who), name)


@router.delete("/{name}", status_code=204)
async def unpublish(name: str, who: User, state: State) -> Response:
    """Its page goes, with every version and their files."""
    await state.run(state.published.delete, _reader(who), name)
    return Response(status_code=204)


@router.get(
    "/{name}/versions/{version}/notebook.ipynb",
    responses={200: {"content": {"application/x-ipynb+json": {}}}},
)
async def snapshot(name: str, version: Version, who: User, state: State) -> Response:
    """A version's notebook as it was published."""
    data = await state.run(state.published.snapshot, _reader(who), name, version)
    return Response(data, media_type="application/x-ipynb+json")
