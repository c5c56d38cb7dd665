"""Your account: your API tokens and your password.

No administrator resets another's password here: whoever knows a password can log in as its
owner, and administrators manage users without becoming them. A forgotten password is reset by
the hub's operator, ``lakehub user password NAME`` (see docs/howto/users.md)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from lakehub.server.web.auth import forget_tokens, person
from lakehub.server.web.deps import State, User

router = APIRouter(prefix="/api")


class TokenOut(BaseModel):
    id: str
    note: str | None
    created: str | None
    expires_at: str | None = Field(description="none: it does not expire")
    last_activity: str | None


class PasswordChange(BaseModel):
    current: str = Field(repr=False)
    new: str = Field(repr=False)


@router.get("/me/tokens", tags=["users"])
async def my_tokens(who: User, state: State) -> list[TokenOut]:
    """Your API tokens (not your browser sessions'); never the tokens themselves."""
    return [TokenOut(**t) for t in await state.hub.tokens(person(who, "tokens"))]


@router.delete("/me/tokens/{token_id}", status_code=204, tags=["users"])
async def revoke_token(token_id: str, who: User, state: State) -> Response:
    """Revoke one of your tokens: programs using it are refused from now on."""
    name = person(who, "tokens")
    if not await state.hub.revoke_token(name, token_id):
        raise HTTPException(404, f"you have no token {token_id!r}")
    forget_tokens(state)
    await state.run(state.directory.audit, name, "token.revoke", name, token_id)
    return Response(status_code=204)


@router.post("/me/password", tags=["users"])
async def change_password(body: PasswordChange, who: User, state: State) -> dict[str, str]:
    """Change your password, with the one you have now."""
    await state.run(
        state.directory.change_password, person(who, "password"), body.current, body.new
    )
    return {"detail": "password changed"}
