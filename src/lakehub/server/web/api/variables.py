"""Environment variables for notebook servers (``/api/env``): yours, set, replaced and deleted;
secret ones are never answered back. They reach your servers at their next start."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from lakehub.server.identity.envvars import EnvVars, EnvVarView
from lakehub.server.web.auth import person
from lakehub.server.web.deps import State, User
from lakehub.server.web.state import AppState

router = APIRouter(prefix="/api/env", tags=["env"])


def area(state: AppState) -> EnvVars:
    return EnvVars(state.directory)


class EnvVarIn(BaseModel):
    # loose types on purpose: the area's readable 400 instead of a 422 that echoes the value
    value: Any = Field(default=None, repr=False)
    secret: Any = False


@router.get("")
async def list_env(who: User, state: State, response: Response) -> list[EnvVarView]:
    """Your variables; secret ones without their value."""
    rows = await state.run(area(state).owned_by, person(who, "environment variables"))
    response.headers["Cache-Control"] = "no-store"
    return rows


@router.put("/{name}")
async def set_env(name: str, body: EnvVarIn, who: User, state: State) -> EnvVarView:
    """Create or replace a variable; it reaches your servers at their next start."""
    owner = person(who, "environment variables")
    if not isinstance(body.secret, bool):
        raise HTTPException(400, "secret must be true or false")
    return await state.run(lambda: area(state).set(owner, name, body.value, secret=body.secret))


@router.delete("/{name}", status_code=204)
async def delete_env(name: str, who: User, state: State) -> Response:
    await state.run(area(state).delete, person(who, "environment variables"), name)
    return Response(status_code=204)
