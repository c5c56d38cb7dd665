"""Quotas on users' own buckets and on spaces (JSON API): everyone reads theirs, admins set them."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from lakehub.server.quotas import QuotaView
from lakehub.server.web.deps import Admin, State, User

router = APIRouter(prefix="/api/quotas", tags=["quotas"])


class QuotaIn(BaseModel):
    max_bytes: int | None = Field(default=None, description="Bytes; none = no limit on bytes")
    max_objects: int | None = Field(default=None, description="Objects; none = no limit")


@router.get("")
async def list_quotas(who: User, state: State) -> list[QuotaView]:
    """Your own quota and those of the spaces you can use (every quota for an admin)."""
    return await state.run(state.quotas.visible, who.name, who.admin)


@router.put("/{kind}/{name}")
async def set_quota(kind: str, name: str, body: QuotaIn, who: Admin, state: State) -> QuotaView:
    """Set a limit; it is measured and enforced by the lake when this answers."""
    return await state.run(state.quotas.set, kind, name, body.max_bytes, body.max_objects, who.name)


@router.delete("/{kind}/{name}", status_code=204)
async def remove_quota(kind: str, name: str, who: Admin, state: State) -> Response:
    """Remove a limit; a block it caused is lifted when this answers."""
    await state.run(state.quotas.remove, kind, name, who.name)
    return Response(status_code=204)
