"""Users and their keys: health, who am I, lake credentials, sign-up, users, tokens, groups and
the audit events. Programs send JupyterHub tokens; see :mod:`lakehub.server.web.auth`."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from lakehub.server.identity.users import LakeCredentials
from lakehub.server.web.deps import Admin, State, User
from lakehub.server.web.schema import MAX_EXPIRY, Instant
from lakehub.server.web.signup_limit import client_address

router = APIRouter(prefix="/api")


class Me(BaseModel):
    name: str
    admin: bool
    groups: list[str]


class UserOut(BaseModel):
    name: str
    admin: bool
    status: str
    created_at: Instant


class NewUser(BaseModel):
    name: str
    admin: bool = False
    password: str | None = Field(
        default=None, description="Generated (and returned once) if absent"
    )


class CreatedUser(UserOut):
    password: str | None = Field(description="The generated password, shown this once")


class SignUp(BaseModel):
    name: str
    password: str


class UserPatch(BaseModel):
    admin: bool | None = None
    password: str | None = None


class TokenRequest(BaseModel):
    note: str = "lakehub"
    expires_in: int | None = Field(
        default=None,
        ge=60,
        le=MAX_EXPIRY,
        description="Seconds (at most 10 years); none = no expiry",
    )


class NewGroup(BaseModel):
    name: str


class EventOut(BaseModel):
    at: Instant
    actor: str
    action: str
    target: str
    detail: str


def _no_store(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"


@router.get("/health", tags=["hub"])
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/me", tags=["users"])
async def me(who: User, state: State) -> Me:
    groups = [
        g for g, members in (await state.run(state.directory.groups)).items() if who.name in members
    ]
    return Me(name=who.name, admin=who.admin, groups=groups)


@router.get("/lake/credentials", tags=["lake"])
async def lake_credentials(who: User, state: State, response: Response) -> LakeCredentials:
    """Your own S3 endpoint and keys, ready for boto3. Nobody else's, admins included."""
    if who.local:
        raise HTTPException(400, "the local administrator has no lake identity; use a user token")
    _no_store(response)
    return await state.run(state.directory.credentials, who.name)


@router.post("/lake/credentials/rotate", tags=["lake"])
async def rotate(who: User, state: State, response: Response) -> LakeCredentials:
    """Replace your key; the old one is refused by the lake when this answers."""
    if who.local:
        raise HTTPException(400, "the local administrator has no lake identity")
    _no_store(response)
    return await state.run(state.directory.rotate, who.name, who.name)


@router.post("/signup", status_code=201, tags=["users"])
async def signup(body: SignUp, state: State, request: Request) -> dict[str, str]:
    """Ask for an account; an administrator approves it. A few a minute per address (429)."""
    if state.settings.auth != "local":
        raise HTTPException(400, f"sign-up is handled by the {state.settings.auth} provider")
    refused = request.app.state.signup_limit.check(client_address(request))
    if refused:
        raise HTTPException(429, refused)
    await state.run(
        lambda: state.directory.create(
            body.name, actor=body.name, password=body.password, status="pending"
        )
    )
    return {"detail": "account requested: an administrator must approve it before you log in"}


@router.get("/users", tags=["users"])
async def list_users(who: Admin, state: State) -> list[UserOut]:
    users = await state.run(state.directory.list_users)
    return [
        UserOut(name=u.name, admin=u.admin, status=u.status, created_at=u.created_at) for u in users
    ]


@router.post("/users", status_code=201, tags=["users"])
async def create_user(body: NewUser, who: Admin, state: State, response: Response) -> CreatedUser:
    user, password = await state.run(
        lambda: state.directory.create(
            body.name, actor=who.name, admin=body.admin, password=body.password
        )
    )
    await state.hub.ensure_user(user.name, user.admin)
    _no_store(response)
    return CreatedUser(
        name=user.name,
        admin=user.admin,
        status=user.status,
        created_at=user.created_at,
        password=password,
    )


@router.post("/users/{name}/approve", tags=["users"])
async def approve(name: str, who: Admin, state: State) -> dict[str, str]:
    await state.run(state.directory.approve, name, who.name)
    return {"detail": f"{name} approved"}


@router.patch("/users/{name}", tags=["users"])
async def patch_user(name: str, body: UserPatch, who: Admin, state: State) -> dict[str, str]:
    if body.admin is not None:
        if name == who.name and not body.admin:
            raise HTTPException(400, "you cannot remove your own admin rights")
        await state.run(state.directory.set_admin, name, body.admin, who.name)
        await state.hub.ensure_user(name, body.admin)
    if body.password is not None:
        # a password someone else knows lets them log in as you: an administrator may set only
        # their own; another's is reset by the local administrator (`lakehub user password`)
        if not (who.local or who.name == name):
            raise HTTPException(
                403,
                "you may only change your own password; the hub's "
                "operator resets others' with 'lakehub user password NAME'",
            )
        await state.run(state.directory.set_password, name, body.password, who.name)
    return {"detail": f"{name} updated"}


@router.delete("/users/{name}", status_code=204, tags=["users"])
async def delete_user(name: str, who: Admin, state: State) -> Response:
    if name == who.name:
        raise HTTPException(400, "you cannot delete yourself")
    await state.remove_user(name, who.name)
    return Response(status_code=204)


@router.post("/users/{name}/tokens", status_code=201, tags=["users"])
async def new_token(
    name: str, body: TokenRequest, who: User, state: State, response: Response
) -> dict[str, str]:
    """A JupyterHub API token for ``name``: for yourself, or for anyone as the local admin."""
    if not (who.local or who.name == name):
        raise HTTPException(403, "you may only create tokens for yourself")
    with state.db.session() as s:
        user = state.directory.get(s, name)
        active, admin = user.status == "active", user.admin
    if not active:
        raise HTTPException(409, f"user {name!r} is not active")
    await state.hub.ensure_user(name, admin)
    _no_store(response)
    return {"token": await state.hub.new_token(name, body.note, body.expires_in)}


@router.get("/groups", tags=["groups"])
async def groups(who: Admin, state: State) -> dict[str, list[str]]:
    return await state.run(state.directory.groups)


@router.post("/groups", status_code=201, tags=["groups"])
async def create_group(body: NewGroup, who: Admin, state: State) -> dict[str, str]:
    await state.run(state.directory.create_group, body.name, who.name)
    return {"detail": f"group {body.name} created"}


@router.delete("/groups/{group}", status_code=204, tags=["groups"])
async def delete_group(group: str, who: Admin, state: State) -> Response:
    await state.run(state.directory.delete_group, group, who.name)
    return Response(status_code=204)


@router.put("/groups/{group}/members/{name}", tags=["groups"])
async def add_member(group: str, name: str, who: Admin, state: State) -> dict[str, str]:
    await state.run(state.directory.add_member, group, name, who.name)
    return {"detail": f"{name} added to {group}"}


@router.delete("/groups/{group}/members/{name}", status_code=204, tags=["groups"])
async def remove_member(group: str, name: str, who: Admin, state: State) -> Response:
    await state.run(state.directory.remove_member, group, name, who.name)
    return Response(status_code=204)


@router.get("/events", tags=["hub"])
async def events(who: Admin, state: State, limit: int = 100) -> list[EventOut]:
    rows = await state.run(state.directory.events, min(max(limit, 1), 1000))
    return [
        EventOut(at=e.at, actor=e.actor, action=e.action, target=e.target, detail=e.detail)
        for e in rows
    ]
