"""External S3 connections (``/api/connections``): register an endpoint with its keys, list,
read and delete them. A secret is answered to its owner only, on ``/credentials``; each change
rewrites the owner's notebook profiles (:mod:`lakehub.server.connections`)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from lakehub.server.connections import Connections, ConnectionSecret, ConnectionView
from lakehub.server.web.auth import person
from lakehub.server.web.deps import State, User
from lakehub.server.web.state import AppState

router = APIRouter(prefix="/api/connections", tags=["connections"])


def area(state: AppState) -> Connections:
    return state.connections()


class NewConnection(BaseModel):
    # defaults everywhere: a missing field gets the area's readable message, not a 422 that
    # would echo the request (and its secret) back
    name: str = ""
    endpoint_url: str = ""
    access_key_id: str = ""
    secret_access_key: str = Field(default="", repr=False)
    region: str = Field(default="", description="Default: us-east-1")
    bucket: str = Field(default="", description="Optional: the one bucket these keys may use")
    verify: bool = Field(default=True, description="Try the credentials on the endpoint first")


@router.get("")
async def list_connections(who: User, state: State) -> list[ConnectionView]:
    """Your connections, without their secrets."""
    return await state.run(area(state).owned_by, person(who, "connections"))


@router.post("", status_code=201)
async def create_connection(body: NewConnection, who: User, state: State) -> ConnectionView:
    """Register an S3-compatible endpoint; the credentials are tried first unless verify=false."""
    owner = person(who, "connections")
    return await state.run(
        lambda: area(state).create(
            owner,
            body.name,
            body.endpoint_url,
            body.access_key_id,
            body.secret_access_key,
            region=body.region,
            bucket=body.bucket,
            verify_first=body.verify,
        )
    )


@router.get("/{name}")
async def get_connection(name: str, who: User, state: State) -> ConnectionView:
    return await state.run(area(state).get, person(who, "connections"), name)


@router.get("/{name}/credentials")
async def connection_credentials(
    name: str, who: User, state: State, response: Response
) -> ConnectionSecret:
    """The connection with its secret: for its owner only."""
    c = await state.run(area(state).credentials, person(who, "connections"), name)
    response.headers["Cache-Control"] = "no-store"
    return c


@router.delete("/{name}", status_code=204)
async def delete_connection(name: str, who: User, state: State) -> Response:
    await state.run(area(state).delete, person(who, "connections"), name)
    return Response(status_code=204)
