"""Who is calling: JupyterHub tokens (programs), HubOAuth cookies (browsers), the local admin.

Programs send ``Authorization: token <JupyterHub API token>`` (or ``Bearer``). Browsers go through
JupyterHub's OAuth (with PKCE) once and then carry an encrypted, HTTP-only cookie. The service's
own token, readable only by the hub's account on the hub's machine, makes the caller the local
administrator (the CLI).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse

from lakehub.server.web.state import AppState

TOKEN_COOKIE = "lakehub-token"
STATE_COOKIE = "lakehub-oauth-state"
LOCAL_ADMIN = "local-admin"
CLIENT_ID = "service-lakehub"  # JupyterHub's OAuth client id for the service named lakehub


@dataclass(frozen=True)
class Principal:
    name: str
    admin: bool
    local: bool = False  # the local administrator, not a hub user


def person(who: Principal, what: str) -> str:
    """The user a request acts for: the local administrator has no ``what`` of its own."""
    if who.local:
        raise HTTPException(400, f"the local administrator has no {what}; use a user token")
    return who.name


class LoginRequired(Exception):
    """Raised for browsers without a session: the app turns it into a redirect to the hub."""


def hub_auth(state: AppState) -> Any:
    """JupyterHub's OAuth client for this service, made on first use: it pulls in JupyterHub's
    whole ORM (a second and a half of imports), so at the first login, not while starting."""
    if state.hub_oauth is None:
        state.hub_oauth = make_hub_auth(state)
    return state.hub_oauth


def forget_tokens(state: AppState) -> None:
    """Drop what was learnt of tokens (for ``cache_max_age``): after a revocation, the revoked
    token is refused at once, not half a minute later."""
    if state.hub_oauth is not None:
        state.hub_oauth.cache = type(state.hub_oauth.cache)(max_age=state.hub_oauth.cache_max_age)
    state.serving.forget()


def make_hub_auth(state: AppState) -> Any:
    from jupyterhub.services.auth import HubOAuth

    return HubOAuth(
        api_token=state.tokens.service,
        api_url=state.runtime.hub_api_url,
        hub_prefix="/hub/",
        base_url=state.prefix,
        oauth_client_id=CLIENT_ID,
        oauth_redirect_uri=state.prefix + "oauth_callback",
        cache_max_age=30,
        access_scopes={"access:services!service=lakehub"},
    )


def _token_from(request: Request) -> tuple[str | None, bool]:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip(), False
    cookie = request.cookies.get(TOKEN_COOKIE)
    if cookie:
        try:
            return request.app.state.lh.vault.decrypt(cookie), True
        except ValueError:
            return None, True
    return None, False


async def principal(request: Request, browser: bool = False) -> Principal:
    state: AppState = request.app.state.lh
    token, from_cookie = _token_from(request)
    if token is None:
        if browser:
            raise LoginRequired()
        raise HTTPException(401, "authentication required: send 'Authorization: token <token>'")
    if hmac.compare_digest(token.encode(), state.tokens.service.encode()):
        return Principal(LOCAL_ADMIN, admin=True, local=True)
    try:
        model: dict[str, Any] | None = await hub_auth(state).user_for_token(token, sync=False)
    except Exception as err:  # the hub is down or refused us
        raise HTTPException(503, f"cannot check the token with JupyterHub: {err}") from None
    if model is None:
        if from_cookie and browser:
            raise LoginRequired()
        raise HTTPException(401, "invalid or expired token")
    if model.get("kind", "user") != "user":
        raise HTTPException(403, "only user tokens can use the LakeHub API")
    if not hub_auth(state).check_scopes(hub_auth(state).access_scopes, model):
        raise HTTPException(403, "this token lacks the scope access:services!service=lakehub")
    name = model["name"]
    admin = await state.run(state.directory_admin_flag, name)
    return Principal(name, admin=admin)


async def require_user(request: Request) -> Principal:
    return await principal(request)


async def require_admin(request: Request) -> Principal:
    who = await principal(request)
    if not who.admin:
        raise HTTPException(403, "administrators only")
    return who


async def require_local_admin(request: Request) -> Principal:
    who = await principal(request)
    if not who.local:
        raise HTTPException(403, "only the hub's own administrator account may do this")
    return who


async def browser_user(request: Request) -> Principal:
    who = await principal(request, browser=True)
    origin = request.headers.get("origin")
    # The proxy keeps the browser's Host header, so a same-site post has Origin's host equal to it.
    if (
        request.method == "POST"
        and origin
        and urlsplit(origin).netloc != request.headers.get("host")
    ):
        raise HTTPException(403, "cross-site form posts are refused")
    return who


def login_redirect(request: Request) -> RedirectResponse:
    """Send a browser to JupyterHub's OAuth (PKCE, S256).

    Built without JupyterHub's client on purpose: JupyterHub itself asks this page while it
    starts, and loading that client would hold its start up by more than a second.
    """
    state: AppState = request.app.state.lh
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    nonce = secrets.token_urlsafe(16)
    next_url = request.url.path
    params = {
        "client_id": CLIENT_ID,
        "redirect_uri": state.prefix + "oauth_callback",
        "response_type": "code",
        "state": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    resp = RedirectResponse(f"/hub/api/oauth2/authorize?{urlencode(params)}", 302)
    resp.set_cookie(
        STATE_COOKIE,
        state.vault.encrypt(f"{nonce} {verifier} {next_url}"),
        max_age=600,
        httponly=True,
        samesite="lax",
        path=state.prefix,
    )
    return resp


router = APIRouter(include_in_schema=False)


@router.get("/oauth_callback")
async def oauth_callback(request: Request, code: str = "", state: str = "") -> RedirectResponse:
    lh: AppState = request.app.state.lh
    raw = request.cookies.get(STATE_COOKIE, "")
    try:
        nonce, verifier, next_url = lh.vault.decrypt(raw).split(" ", 2)
    except ValueError:
        raise HTTPException(400, "login state missing or stale: open the portal again") from None
    if not code or not hmac.compare_digest(nonce, state):
        raise HTTPException(403, "login state does not match: open the portal again")
    token = await hub_auth(lh).token_for_code(code, code_verifier=verifier, sync=False)
    if not next_url.startswith(lh.prefix):
        next_url = lh.prefix
    resp = RedirectResponse(next_url, 302)
    resp.delete_cookie(STATE_COOKIE, path=lh.prefix)
    resp.set_cookie(
        TOKEN_COOKIE,
        lh.vault.encrypt(token),
        httponly=True,
        samesite="lax",
        path=lh.prefix,
    )
    return resp


@router.get("/logout")
async def logout(request: Request) -> RedirectResponse:
    lh: AppState = request.app.state.lh
    resp = RedirectResponse("/hub/logout", 302)
    resp.delete_cookie(TOKEN_COOKIE, path=lh.prefix)
    return resp
