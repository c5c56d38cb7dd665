"""Registered models as LakeHub adds to MLflow's registry (JSON API): every version's lineage,
the history of every alias, one-step rollback. MLflow's own API is at ``/mlflow`` (see
:mod:`lakehub.server.web.api.mlflow`)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from lakehub.server.models.base import Reader
from lakehub.server.models.registry import AliasEventView, ModelDetail, ModelView
from lakehub.server.web.auth import Principal, person
from lakehub.server.web.deps import State, User

router = APIRouter(prefix="/api/models", tags=["models"])


class AliasMove(BaseModel):
    version: int = Field(ge=1, le=2**31 - 1)


class Rolled(BaseModel):
    alias: str
    version: int = Field(description="the version the alias points to now")


def _reader(who: Principal) -> Reader:
    return Reader(person(who, "models"), who.admin)


@router.get("")
async def models(who: User, state: State) -> list[ModelView]:
    """Registered models you can read (yours, your spaces'), most recently changed first."""
    return await state.run(state.registry.visible, _reader(who))


@router.get("/{name}")
async def model(name: str, who: User, state: State) -> ModelDetail:
    """A model: its versions with their lineage, its aliases and their history."""
    return await state.run(state.registry.detail, _reader(who), name)


@router.get("/{name}/history")
async def history(
    name: str, who: User, state: State, alias: str | None = None
) -> list[AliasEventView]:
    """Which version each alias (or ``alias``) pointed to, from when, moved by whom."""
    return await state.run(state.registry.alias_history, _reader(who), name, alias)


@router.put("/{name}/aliases/{alias}")
async def set_alias(name: str, alias: str, body: AliasMove, who: User, state: State) -> Rolled:
    """Point ``alias`` at a version (recorded in the history)."""
    await state.run(state.registry.set_alias, _reader(who), name, alias, str(body.version))
    return Rolled(alias=alias, version=body.version)


@router.post("/{name}/aliases/{alias}/rollback")
async def rollback(name: str, alias: str, who: User, state: State) -> Rolled:
    """Move ``alias`` back to the version it pointed to before its last move."""
    version = await state.run(state.registry.rollback, _reader(who), name, alias)
    return Rolled(alias=alias, version=version)
