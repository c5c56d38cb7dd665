"""The AI library (JSON API): its templates, and deploying one (trained on its sample or on a
catalogued dataset you read, registered as ``ailib-<name>``, served as the endpoint
``ailib-<name>``). See :mod:`lakehub.server.serving.ailib`."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from lakehub.server.models.base import Reader
from lakehub.server.serving.ailib import TemplateView, Training
from lakehub.server.web.auth import person
from lakehub.server.web.deps import State, User

router = APIRouter(prefix="/api/ailib", tags=["ai library"])


class DeployTemplate(BaseModel):
    dataset: str | None = Field(
        None, description="a catalogued dataset to train on (default: the template's sample)"
    )


@router.get("")
async def templates(who: User, state: State) -> list[TemplateView]:
    """The ten templates, with your last deploy of each."""
    return state.library.catalog(Reader(person(who, "AI library"), who.admin))


@router.post("/{name}/deploy", status_code=202)
async def deploy(name: str, body: DeployTemplate, who: User, state: State) -> Training:
    """Train, register and serve template ``name``: answers at once (``training``); ``GET
    /api/ailib`` says when it serves, or why it failed."""
    reader = Reader(person(who, "AI library"), who.admin)
    return await state.library.deploy(reader, name, body.dataset or None)
