"""Shared spaces and their grants (JSON API)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from lakehub.server.identity.spaces import SpaceView
from lakehub.server.web.routers.api import State, User
from lakehub.server.web.schema import Instant

router = APIRouter(prefix="/api/spaces", tags=["spaces"])


class NewSpace(BaseModel):
    name: str
    owner: str | None = Field(default=None, description="Admins only; default: yourself")


class GrantIn(BaseModel):
    user: str | None = None
    group: str | None = None
    access: Literal["read", "write"]


class GrantOut(BaseModel):
    kind: Literal["user", "group"]
    name: str
    access: str


class SpaceOut(BaseModel):
    name: str
    bucket: str
    owner: str
    created_at: Instant
    access: str = Field(description="Yours: owner, write, read, or admin")
    grants: list[GrantOut]

    @classmethod
    def of(cls, v: SpaceView) -> SpaceOut:
        return cls(
            name=v.name,
            bucket=v.bucket,
            owner=v.owner,
            created_at=v.created_at,
            access=v.access,
            grants=[GrantOut(kind=k, name=n, access=a) for k, n, a in v.grants],  # type: ignore[arg-type]
        )


@router.get("")
async def list_spaces(who: User, state: State) -> list[SpaceOut]:
    """The spaces you own or were granted (all of them for an admin)."""
    return [SpaceOut.of(v) for v in await state.run(state.spaces.visible, who.name, who.admin)]


@router.post("", status_code=201)
async def create_space(body: NewSpace, who: User, state: State) -> SpaceOut:
    owner = body.owner or who.name
    if owner != who.name and not who.admin:
        raise HTTPException(403, "only administrators create spaces for someone else")
    if who.local and body.owner is None:
        raise HTTPException(400, "the local administrator must name the space's owner")
    view = await state.run(state.spaces.create, body.name, owner, who.name)
    return SpaceOut.of(view)


@router.get("/{name}")
async def get_space(name: str, who: User, state: State) -> SpaceOut:
    return SpaceOut.of(await state.run(state.spaces.get, name, who.name, who.admin))


@router.put("/{name}/grants")
async def grant(name: str, body: GrantIn, who: User, state: State) -> SpaceOut:
    """Give a user or a group read or write access; the lake enforces it when this answers."""
    await state.run(
        lambda: state.spaces.grant(
            name, body.access, who.name, who.admin, user=body.user, group=body.group
        )
    )
    return SpaceOut.of(await state.run(state.spaces.get, name, who.name, True))


@router.delete("/{name}/grants", status_code=204)
async def revoke(
    name: str, who: User, state: State, user: str | None = None, group: str | None = None
) -> Response:
    """Take access away; the grantee's keys are refused on the space when this answers."""
    await state.run(lambda: state.spaces.revoke(name, who.name, who.admin, user=user, group=group))
    return Response(status_code=204)


@router.delete("/{name}", status_code=204)
async def delete_space(name: str, who: User, state: State) -> Response:
    """Forget the space and its grants (the bucket and its data stay)."""
    await state.run(state.spaces.delete, name, who.name, who.admin)
    return Response(status_code=204)
