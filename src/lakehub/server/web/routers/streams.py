"""Ingestion (JSON API): sources that push data, streams it lands in, the receivers' addresses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from lakehub.server.ingest.registry import Registry, SourceView, StreamView
from lakehub.server.web.routers.api import State, User
from lakehub.server.web.schema import INT32, INT64, Instant

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


class SourceOut(BaseModel):
    name: str
    owner: str
    tags: list[str]
    shared_key: bool
    max_bytes_per_s: int | None
    max_message_bytes: int
    created_at: Instant

    @classmethod
    def of(cls, v: SourceView) -> SourceOut:
        return cls(**vars(v))


class NewSourceOut(SourceOut):
    token: str = Field(description="for HTTP: shown once")
    key: str | None = Field(description="the Forward shared key: shown once")


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


class StreamOut(BaseModel):
    name: str
    owner: str
    kind: str
    path: str
    tags: list[str]
    dataset: str | None
    received_bytes: int
    received_entries: int
    last_event_at: float | None
    rate_bytes: float
    rate_entries: float
    moved_records: int
    moved_bytes: int
    moved_until: float | None
    lag_seconds: float
    errors: int
    last_error: str
    created_at: Instant
    access: str

    @classmethod
    def of(cls, v: StreamView) -> StreamOut:
        return cls(lag_seconds=v.lag, **vars(v))


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
async def create_source(body: NewSource, who: User, state: State) -> NewSourceOut:
    """Register a source; its token and shared key are in this answer only."""
    owner = _owner(who, body.owner)
    view, token, key = await state.run(
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
    return NewSourceOut(token=token, key=key, **vars(view))


@router.get("/sources")
async def list_sources(who: User, state: State) -> list[SourceOut]:
    views = await state.run(Registry(state.directory).sources, who.name, who.admin)
    return [SourceOut.of(v) for v in views]


@router.delete("/sources/{name}", status_code=204)
async def delete_source(name: str, who: User, state: State) -> Response:
    await state.run(Registry(state.directory).delete_source, name, who.name, who.admin)
    return Response(status_code=204)


@router.post("/streams", status_code=201)
async def create_stream(body: NewStream, who: User, state: State) -> StreamOut:
    """A stream in a bucket its owner may write; records streams are catalogued as datasets."""
    owner = _owner(who, body.owner)
    view = await state.run(
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
    return StreamOut.of(view)


@router.get("/streams")
async def list_streams(who: User, state: State) -> list[StreamOut]:
    """Streams you can read (in your buckets or spaces granted to you)."""
    views = await state.run(Registry(state.directory).streams, who.name, who.admin)
    return [StreamOut.of(v) for v in views]


@router.get("/streams/{name}")
async def get_stream(name: str, who: User, state: State) -> StreamOut:
    return StreamOut.of(
        await state.run(Registry(state.directory).stream, name, who.name, who.admin)
    )


@router.delete("/streams/{name}", status_code=204)
async def delete_stream(name: str, who: User, state: State) -> Response:
    """Stop routing into the stream; its data stays in the lake."""
    await state.run(Registry(state.directory).delete_stream, name, who.name, who.admin)
    return Response(status_code=204)
