"""What the API and the portal show of endpoints (one declaration per resource)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from lakehub.server.schema import Instant


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
