"""Ingestion (JSON API): sources that push data, streams it lands in, the receivers' addresses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from lakehub.server.ingest.registry import NewSourceView, Registry, SourceView, StreamView
from lakehub.server.web.deps import State, User
from lakehub.server.web.schema import INT32, INT64

router = APIRouter(prefix="/api", tags=["ingestion"])


class NewSource(BaseModel):
    name: str
    tags: list[str] = Field(description="glob patterns of the tags it may send, e.g. ['app.*']")
    owner: str | None = Field(default=None, description="administrators only; default: you")
    shared_key: bool = Field(
        default=True,
        description="Forward clients must authenticate with a shared key "
        "(false: clients without one may send these tags)",
    )
    max_bytes_per_s: int | None = Field(default=None, ge=1024, le=INT64)
    max_message_bytes: int = Field(default=16 * 2**20, ge=1024, le=1 << 30)


class NewStream(BaseModel):
    name: str
    kind: str = Field(default="records", description="records (Parquet dataset) or raw (bytes)")
    tags: list[str] = Field(description="glob patterns routed into this stream")
    path: str | None = Field(
        default=None, description="s3://bucket/prefix; default: s3://<owner>-home/streams/<name>"
    )
    owner: str | None = Field(default=None, description="administrators only; default: you")
    position: int = Field(
        default=100, ge=-INT32, le=INT32, description="lower is tried first when patterns overlap"
    )


def _owner(who: Any, owner: str | None) -> str:
    if owner and owner != who.name and not who.admin:
        raise HTTPException(403, "only administrators act for another user")
    name = owner or who.name
    if who.local and not owner:
        raise HTTPException(400, "the local administrator must name the owner")
    return name


@router.get("/ingest")
async def endpoints(who: User, state: State) -> dict[str, Any]:
    """Where the receivers listen."""
    s, p = state.settings, state.runtime.ports
    return {
        "host": s.ingest_host,
        "forward_port": p.get("forward"),
        "http_port": p.get("ingest_http"),
        "enabled": s.ingest,
        "forward_tls": bool(s.forward_tls_cert),
    }


@router.post("/sources", status_code=201)
async def create_source(body: NewSource, who: User, state: State) -> NewSourceView:
    """Register a source; its token and shared key are in this answer only."""
    owner = _owner(who, body.owner)
    return await state.run(
        lambda: Registry(state.directory).create_source(
            body.name,
            owner,
            body.tags,
            who.name,
            shared_key=body.shared_key,
            max_bytes_per_s=body.max_bytes_per_s,
            max_message_bytes=body.max_message_bytes,
        )
    )


@router.get("/sources")
async def list_sources(who: User, state: State) -> list[SourceView]:
    return await state.run(Registry(state.directory).sources, who.name, who.admin)


@router.delete("/sources/{name:path}", status_code=204)
async def delete_source(name: str, who: User, state: State) -> Response:
    await state.run(Registry(state.directory).delete_source, name, who.name, who.admin)
    return Response(status_code=204)


@router.post("/streams", status_code=201)
async def create_stream(body: NewStream, who: User, state: State) -> StreamView:
    """A stream in a bucket its owner may write; records streams are catalogued as datasets."""
    owner = _owner(who, body.owner)
    return await state.run(
        lambda: Registry(state.directory).create_stream(
            body.name,
            owner,
            body.kind,
            body.tags,
            who.name,
            path=body.path,
            position=body.position,
        )
    )


@router.get("/streams")
async def list_streams(who: User, state: State) -> list[StreamView]:
    """Streams you can read (in your buckets or spaces granted to you)."""
    return await state.run(Registry(state.directory).streams, who.name, who.admin)


@router.get("/streams/{name:path}")
async def get_stream(name: str, who: User, state: State) -> StreamView:
    return await state.run(Registry(state.directory).stream, name, who.name, who.admin)


@router.delete("/streams/{name:path}", status_code=204)
async def delete_stream(name: str, who: User, state: State) -> Response:
    """Stop routing into the stream; its data stays in the lake."""
    await state.run(Registry(state.directory).delete_stream, name, who.name, who.admin)
    return Response(status_code=204)
