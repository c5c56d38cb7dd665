"""Shared spaces and their grants (JSON API)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from lakehub.server.identity.spaces import SpaceView
from lakehub.server.web.deps import State, User

router = APIRouter(prefix="/api/spaces", tags=["spaces"])


class NewSpace(BaseModel):
    name: str
    owner: str | None = Field(default=None, description="Admins only; default: yourself")


class GrantIn(BaseModel):
    user: str | None = None
    group: str | None = None
    access: Literal["read", "write"]


@router.get("")
async def list_spaces(who: User, state: State) -> list[SpaceView]:
    """The spaces you own or were granted (all of them for an admin)."""
    return await state.run(state.spaces.visible, who.name, who.admin)


@router.post("", status_code=201)
async def create_space(body: NewSpace, who: User, state: State) -> SpaceView:
    owner = body.owner or who.name
    if owner != who.name and not who.admin:
        raise HTTPException(403, "only administrators create spaces for someone else")
    if who.local and body.owner is None:
        raise HTTPException(400, "the local administrator must name the space's owner")
    return await state.run(state.spaces.create, body.name, owner, who.name)


@router.get("/{name}")
async def get_space(name: str, who: User, state: State) -> SpaceView:
    return await state.run(state.spaces.get, name, who.name, who.admin)


@router.put("/{name}/grants")
async def grant(name: str, body: GrantIn, who: User, state: State) -> SpaceView:
    """Give a user or a group read or write access; the lake enforces it when this answers."""
    await state.run(
        lambda: state.spaces.grant(
            name, body.access, who.name, who.admin, user=body.user, group=body.group
        )
    )
    return await state.run(state.spaces.get, name, who.name, True)


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


class RetentionIn(BaseModel):
    run_days: int | None = Field(
        ge=1, le=36_500, description="Days a finished run is kept; null: for ever"
    )


@router.put("/{name}/retention")
async def set_retention(name: str, body: RetentionIn, who: User, state: State) -> RetentionIn:
    """How long the space's finished runs are kept (its owner or an administrator): older ones
    are deleted, and their files leave the lake after the grace period."""
    space = await state.run(state.spaces.get, name, who.name, who.admin)
    if space.access != "owner" and not who.admin:
        raise HTTPException(403, f"only the owner of space {name!r} sets its retention")
    await state.run(state.purge.set_retention, space.bucket, body.run_days, who.name)
    kept = f"finished runs kept {body.run_days} days" if body.run_days else "runs kept for ever"
    await state.run(state.directory.audit, who.name, "space.retention", name, kept)
    return body


@router.get("/{name}/retention")
async def get_retention(name: str, who: User, state: State) -> RetentionIn:
    space = await state.run(state.spaces.get, name, who.name, who.admin)
    return RetentionIn(run_days=await state.run(state.purge.retention, space.bucket))
