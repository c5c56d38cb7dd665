"""Each Dask dashboard for its cluster's owner only (runs inside dask-gateway-server).

Upstream dask-gateway routes ``<prefix>/clusters/<name>/`` from its proxy straight to the
scheduler's dashboard, for anyone who asks. LakeHub's backend adds no such route (only the
scheduler's TLS route), so these paths reach the gateway's own web app, and
:meth:`Dashboards.dashboard` answers them before any byte of the dashboard is sent:

- The caller must be the cluster's owner. Nobody else: not other users, not administrators
  (they manage users, they do not become them). Another's cluster, or none, answers 404, as the
  gateway's API does.
- Programs send a JupyterHub token (``Authorization: jupyterhub <token>``, what dask-gateway's
  client sends; ``token`` and ``Bearer`` are taken too). Browsers go through JupyterHub's OAuth
  once (PKCE, no confirmation page) and then carry an HTTP-only session cookie; without one, a
  page request is sent to log in and anything else gets 401. No secret ever travels in a URL
  (the OAuth code is single-use and bound to a state cookie). A cookie-borne websocket or
  non-GET request must come from the hub's own origin (403).
- Sessions live in the gateway's memory, their token checked again with JupyterHub every
  ``RECHECK`` seconds (a revoked token ends the session); a gateway restart sends browsers
  through the (silent) OAuth round again.
- Pages, assets and the dashboard's websockets (bokeh) are relayed to the scheduler's dashboard,
  without the caller's cookies and Authorization header, and without any cookie it sets.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import WSMsgType, web
from dask_gateway_server.models import ClusterStatus

SESSION_COOKIE = "lakehub-dask-session"
STATE_COOKIE = "lakehub-dask-oauth-state"
RECHECK = 60.0  # seconds between checks of a session's token with JupyterHub
MAX_SESSIONS = 10_000
LOGIN_TTL = 600.0
HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
NOT_UPSTREAM = HOP | {"cookie", "authorization"}
NOT_DOWNSTREAM = HOP | {"set-cookie"}


class Dashboards:
    """The routes, the browser sessions and the relay; ``auth`` is the gateway's authenticator
    (it turns a JupyterHub token into a user, or raises 401)."""

    def __init__(
        self, auth: Any, prefix: str, public_url: str, hub_api_url: str, client_secret: str
    ) -> None:
        self.auth = auth
        self.public_host = urlsplit(public_url).netloc  # the hub's front door, host:port
        self.prefix = prefix.rstrip("/")  # the gateway's public path, e.g. /services/dask-gateway
        self.hub_api_url = hub_api_url.rstrip("/")
        self.client_id = f"service-{prefix.rstrip('/').rpartition('/')[2]}"
        self.client_secret = client_secret
        self.sessions: dict[str, tuple[str, str, float]] = {}  # id -> (token, user, checked)
        self.logins: dict[str, tuple[str, str, float]] = {}  # state -> (verifier, next, made)
        self.http: aiohttp.ClientSession | None = None

    def install(self, app: web.Application) -> None:
        app.router.add_get("/oauth_callback", self.oauth_callback)
        app.router.add_route("*", "/clusters/{name}", self.dashboard)
        app.router.add_route("*", "/clusters/{name}/{tail:.*}", self.dashboard)
        app.on_cleanup.append(self._close)

    async def _close(self, app: web.Application) -> None:
        if self.http is not None:
            await self.http.close()

    def _client(self) -> aiohttp.ClientSession:
        if self.http is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
            self.http = aiohttp.ClientSession(
                timeout=timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self.http

    # who is asking

    async def _session_user(self, request: web.Request) -> str | None:
        sid = request.cookies.get(SESSION_COOKIE, "")
        found = self.sessions.get(sid)
        if found is None:
            return None
        token, name, checked = found
        if time.monotonic() - checked > RECHECK:
            try:
                name = (await self.auth.user_for_token(token)).name
            except web.HTTPUnauthorized:
                self.sessions.pop(sid, None)
                return None
            self.sessions[sid] = (token, name, time.monotonic())
        return name

    async def _caller(self, request: web.Request) -> str:
        """The caller's user name; raises 401, or a redirect to the login for a page."""
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() not in ("jupyterhub", "token", "bearer") or not token.strip():
                raise web.HTTPUnauthorized(
                    text="send 'Authorization: jupyterhub <token>'",
                    headers={"WWW-Authenticate": "jupyterhub"},
                )
            return str((await self.auth.user_for_token(token.strip())).name)
        name = await self._session_user(request)
        if name is None:
            if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
                raise self._login(request)
            raise web.HTTPUnauthorized(
                text="log in: a JupyterHub token ('Authorization: jupyterhub <token>') or a "
                "browser session of the cluster's owner",
                headers={"WWW-Authenticate": "jupyterhub"},
            )
        # dask-gateway's proxy does not pass the browser's Host on as Host: a page of the hub
        # has the hub's public address for its Origin (or a Host a proxy forwarded)
        origin = request.headers.get("Origin")
        forwarded = ",".join(request.headers.getall("X-Forwarded-Host", []))
        hosts = {self.public_host, request.headers.get("Host", "")} | {
            h.strip() for h in forwarded.split(",")
        }
        if (
            (request.method != "GET" or _is_websocket(request))
            and origin is not None
            and (urlsplit(origin).netloc not in hosts - {""})
        ):
            raise web.HTTPForbidden(
                text=f"cross-site requests to a dashboard are refused (from {origin})"
            )
        return name

    def _login(self, request: web.Request) -> web.HTTPFound:
        """Send a browser to JupyterHub's OAuth (PKCE, S256), to come back to this page."""
        now = time.monotonic()
        for key in [k for k, v in self.logins.items() if now - v[2] > LOGIN_TTL]:
            del self.logins[key]
        if len(self.logins) >= MAX_SESSIONS:
            self.logins.pop(next(iter(self.logins)))
        state, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
        self.logins[state] = (verifier, self.prefix + request.path_qs, now)
        digest = hashlib.sha256(verifier.encode()).digest()
        params = {
            "client_id": self.client_id,
            "redirect_uri": f"{self.prefix}/oauth_callback",
            "response_type": "code",
            "state": state,
            "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
        resp = web.HTTPFound(f"/hub/api/oauth2/authorize?{urlencode(params)}")
        resp.set_cookie(
            STATE_COOKIE,
            state,
            max_age=int(LOGIN_TTL),
            httponly=True,
            samesite="Lax",
            path=self.prefix + "/",
        )
        return resp

    async def oauth_callback(self, request: web.Request) -> web.StreamResponse:
        state = request.query.get("state", "")
        login = self.logins.get(state)
        if (
            login is None
            or not request.query.get("code")
            or not hmac.compare_digest(state, request.cookies.get(STATE_COOKIE, ""))
        ):
            raise web.HTTPBadRequest(
                text="login state missing, stale or not this browser's: open the dashboard again"
            )
        del self.logins[state]
        verifier, next_url, _ = login
        form = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "grant_type": "authorization_code",
            "code": request.query["code"],
            "redirect_uri": f"{self.prefix}/oauth_callback",
            "code_verifier": verifier,
        }
        async with self._client().post(f"{self.hub_api_url}/oauth2/token", data=form) as resp:
            if resp.status != 200:
                raise web.HTTPForbidden(
                    text="JupyterHub refused the login: open the dashboard again"
                )
            token = (await resp.json())["access_token"]
        name = (await self.auth.user_for_token(token)).name
        if len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = (token, name, time.monotonic())
        out = web.HTTPFound(next_url)
        out.del_cookie(STATE_COOKIE, path=self.prefix + "/")
        out.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Lax", path=self.prefix + "/")
        raise out

    # the dashboard itself

    async def dashboard(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        user = await self._caller(request)
        cluster = await request.app["backend"].get_cluster(name)
        if cluster is None or cluster.username != user:
            raise web.HTTPNotFound(text=f"you have no cluster named {name}")
        if cluster.status != ClusterStatus.RUNNING or not cluster.dashboard_address:
            raise web.HTTPConflict(
                text=f"cluster {name} has no dashboard now ({cluster.status.name.lower()})"
            )
        url = f"{cluster.dashboard_address}/{request.match_info.get('tail', '')}"
        if request.query_string:
            url += "?" + request.query_string
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_UPSTREAM}
        try:
            if _is_websocket(request):
                return await self._relay_websocket(request, url)
            return await self._relay(request, url, headers)
        except aiohttp.WSServerHandshakeError as err:
            raise web.HTTPBadGateway(
                text=f"cluster {name}'s dashboard refused the websocket ({err.status})"
            ) from None
        except (TimeoutError, aiohttp.ClientConnectionError) as err:
            raise web.HTTPBadGateway(
                text=f"cluster {name}'s dashboard is not answering: {err}"
            ) from None

    async def _relay(
        self, request: web.Request, url: str, headers: dict[str, str]
    ) -> web.StreamResponse:
        body = request.content if request.body_exists else None
        async with self._client().request(
            request.method, url, headers=headers, data=body, allow_redirects=False
        ) as up:
            out = web.StreamResponse(status=up.status, reason=up.reason)
            for key, value in up.headers.items():
                if key.lower() not in NOT_DOWNSTREAM:
                    out.headers.add(key, value)
            await out.prepare(request)
            async for chunk in up.content.iter_chunked(1 << 16):
                await out.write(chunk)
            await out.write_eof()
            return out

    async def _relay_websocket(self, request: web.Request, url: str) -> web.StreamResponse:
        offered = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]  # bokeh sends its session token as a subprotocol
        headers = {k: v for k, v in request.headers.items() if k.lower() == "origin"}
        async with self._client().ws_connect(
            "ws" + url[4:], protocols=offered, headers=headers
        ) as up:
            down = web.WebSocketResponse(protocols=(up.protocol,) if up.protocol else ())
            await down.prepare(request)
            await asyncio.gather(_pump(down, up), _pump(up, down))
            return down


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def _pump(src: Any, dst: Any) -> None:
    """Messages one way until either side closes; then closes both."""
    try:
        async for msg in src:
            if msg.type == WSMsgType.TEXT:
                await dst.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await dst.send_bytes(msg.data)
            else:
                break
    finally:
        await dst.close()
        await src.close()
