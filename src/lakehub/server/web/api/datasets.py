"""The dataset catalog (JSON API): register, find, describe, preview."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from lakehub.server.catalog import DatasetView
from lakehub.server.web.deps import State, User

router = APIRouter(prefix="/api/datasets", tags=["datasets"])


class NewDataset(BaseModel):
    name: str
    path: str = Field(description="s3://bucket/prefix/ in your lake")
    format: str = Field(description="parquet, csv, jsonl, zarr or raw")
    partitioning: list[str] | None = Field(
        default=None, description="hive folder keys in order, e.g. [year, month]; default: found"
    )
    description: str = Field(default="", max_length=20_000)
    tags: list[str] = []
    lineage: str = Field(default="", max_length=20_000)


class DatasetPatch(BaseModel):
    description: str | None = Field(default=None, max_length=20_000)
    tags: list[str] | None = None
    lineage: str | None = Field(default=None, max_length=20_000)


def _local(who: Any) -> None:
    if who.local:
        raise HTTPException(400, "the local administrator has no lake keys: act as a hub user")


@router.get("", response_model_by_alias=True)
async def search(
    who: User, state: State, q: str = "", tag: str = "", column: str = ""
) -> list[DatasetView]:
    """Datasets you can read, matching words in name, description, tags and columns."""
    return await state.run(lambda: state.catalog.search(who.name, who.admin, q, tag, column))


@router.post("", status_code=201, response_model_by_alias=True)
async def register(body: NewDataset, who: User, state: State) -> DatasetView:
    """Register a lake path; its schema, partitions, rows and size are read with your keys."""
    _local(who)
    return await state.run(
        lambda: state.catalog.register(
            body.name,
            body.path,
            body.format,
            who.name,
            partitioning=body.partitioning,
            description=body.description,
            tags=body.tags,
            lineage=body.lineage,
        )
    )


@router.get("/{name:path}/preview")
async def preview(name: str, who: User, state: State, limit: int = 20) -> dict[str, Any]:
    """The first rows, read with your own keys."""
    _local(who)
    return await state.run(state.catalog.preview, name, who.name, who.admin, limit)


@router.get("/{name:path}", response_model_by_alias=True)
async def get(name: str, who: User, state: State) -> DatasetView:
    return await state.run(state.catalog.get, name, who.name, who.admin)


@router.patch("/{name:path}", response_model_by_alias=True)
async def update(name: str, body: DatasetPatch, who: User, state: State) -> DatasetView:
    return await state.run(
        lambda: state.catalog.update(
            name,
            who.name,
            who.admin,
            description=body.description,
            tags=body.tags,
            lineage=body.lineage,
        )
    )


@router.post("/{name:path}/refresh", response_model_by_alias=True)
async def refresh(name: str, who: User, state: State) -> DatasetView:
    """Infer again after new files arrived."""
    _local(who)
    return await state.run(state.catalog.refresh, name, who.name, who.admin)


@router.delete("/{name:path}", status_code=204)
async def delete(name: str, who: User, state: State) -> Response:
    """Forget the entry; the data stays in the lake."""
    await state.run(state.catalog.delete, name, who.name, who.admin)
    return Response(status_code=204)
