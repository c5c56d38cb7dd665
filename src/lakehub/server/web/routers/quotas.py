"""Quotas on users' own buckets and on spaces (JSON API): everyone reads theirs, admins set them."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from lakehub.server.quotas import QuotaView
from lakehub.server.web.routers.api import Admin, State, User
from lakehub.server.web.schema import Instant

router = APIRouter(prefix="/api/quotas", tags=["quotas"])


class QuotaIn(BaseModel):
    max_bytes: int | None = Field(default=None, description="Bytes; none = no limit on bytes")
    max_objects: int | None = Field(default=None, description="Objects; none = no limit")


class QuotaOut(BaseModel):
    kind: str = Field(description="user (the buckets NAME-*) or space (the bucket space-NAME)")
    name: str
    max_bytes: int | None
    max_objects: int | None
    used_bytes: int
    used_objects: int
    measured_at: Instant | None
    blocked: bool = Field(description="True while the lake refuses new writes")
    usage: str = Field(description="What is used of each limit, for people")
    message: str = Field(description="The quota-exceeded sentence while blocked")
    set_by: str
    updated_at: Instant

    @classmethod
    def of(cls, q: QuotaView) -> QuotaOut:
        return cls(
            kind=q.kind,
            name=q.name,
            max_bytes=q.max_bytes,
            max_objects=q.max_objects,
            used_bytes=q.used_bytes,
            used_objects=q.used_objects,
            measured_at=q.measured_at,
            blocked=q.blocked,
            usage=q.usage(),
            message=q.message(),
            set_by=q.set_by,
            updated_at=q.updated_at,
        )


@router.get("")
async def list_quotas(who: User, state: State) -> list[QuotaOut]:
    """Your own quota and those of the spaces you can use (every quota for an admin)."""
    return [QuotaOut.of(q) for q in await state.run(state.quotas.visible, who.name, who.admin)]


@router.put("/{kind}/{name}")
async def set_quota(kind: str, name: str, body: QuotaIn, who: Admin, state: State) -> QuotaOut:
    """Set a limit; it is measured and enforced by the lake when this answers."""
    view = await state.run(state.quotas.set, kind, name, body.max_bytes, body.max_objects, who.name)
    return QuotaOut.of(view)


@router.delete("/{kind}/{name}", status_code=204)
async def remove_quota(kind: str, name: str, who: Admin, state: State) -> Response:
    """Remove a limit; a block it caused is lifted when this answers."""
    await state.run(state.quotas.remove, kind, name, who.name)
    return Response(status_code=204)
