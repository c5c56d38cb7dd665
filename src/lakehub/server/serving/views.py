"""What the API and the portal show of endpoints (one declaration per resource), and the
functions that make it from the tables' rows."""

from __future__ import annotations

from pydantic import BaseModel, Field

from lakehub.server.models.owners import owner_of
from lakehub.server.schema import Instant, from_ms, from_ms_or_none
from lakehub.server.serving.tables import Endpoint, EndpointToken, Rollout


class TokenView(BaseModel):
    id: int
    name: str
    hint: str = Field(description="the token's first characters: the token itself is shown once")
    creator: str
    created_at: Instant
    revoked_at: Instant | None


class RolloutView(BaseModel):
    role: str = Field(description="main or canary")
    version: int
    replicas: int
    reason: str
    actor: str
    state: str = Field(description="starting, done or failed")
    message: str
    started_at: Instant
    ended_at: Instant | None


class EndpointView(BaseModel):
    name: str = Field(description="as you name it: bare when yours, else owner.name")
    owner: str
    path: str = Field(description="its address below the API's root: serving/<owner>/<name>")
    access: str = Field(description="write or read")
    model: str
    ref: str = Field(description="what it serves: @alias or a version number")
    version: int | None = Field(description="the version serving now (None: none yet)")
    replicas: int
    ready_replicas: int
    rolling_out: int = Field(description="rollouts asked for and not finished yet")
    size: str
    environment: str = Field(description="empty: the environment the model was trained in")
    follow: bool = Field(description="a move of the alias rolls the new version out")
    batching: bool
    canary_ref: str | None
    canary_version: int | None
    canary_share: int = Field(description="percent of requests to the canary")
    status: str = Field(description="deploying, serving or failed")
    message: str = Field(description="why the last rollout failed, if it did")
    creator: str
    created_at: Instant
    updated_at: Instant


class EndpointDetail(EndpointView):
    rollouts: list[RolloutView]
    tokens: list[TokenView] = Field(
        description="its application tokens (to those who may change it)"
    )


def endpoint_view(
    row: Endpoint, shown: str, writable: bool, model: str, ready: int, rolling_out: int
) -> EndpointView:
    """``row`` as a caller sees it: named ``shown``, its model named ``model``."""
    owner = owner_of(row.bucket)
    return EndpointView(
        name=shown,
        owner=owner,
        path=f"serving/{owner}/{row.name}",
        access="write" if writable else "read",
        model=model,
        ref=row.ref,
        version=row.version,
        replicas=row.replicas,
        ready_replicas=ready,
        rolling_out=rolling_out,
        size=row.size,
        environment=row.environment,
        follow=row.follow,
        batching=row.batching,
        canary_ref=row.canary_ref or None,
        canary_version=row.canary_version,
        canary_share=row.canary_share,
        status=row.status,
        message=row.message,
        creator=row.creator,
        created_at=from_ms(row.created_ms),
        updated_at=from_ms(row.updated_ms),
    )


def rollout_view(r: Rollout) -> RolloutView:
    return RolloutView(
        role=r.role,
        version=r.version,
        replicas=r.replicas,
        reason=r.reason,
        actor=r.actor,
        state=r.state,
        message=r.message,
        started_at=from_ms(r.started_ms),
        ended_at=from_ms_or_none(r.ended_ms),
    )


def token_view(t: EndpointToken) -> TokenView:
    return TokenView(
        id=t.id,
        name=t.name,
        hint=t.hint + "...",
        creator=t.creator,
        created_at=from_ms(t.created_ms),
        revoked_at=from_ms_or_none(t.revoked_ms),
    )
