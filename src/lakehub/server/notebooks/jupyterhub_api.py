"""A small client for JupyterHub's REST API, used with the control plane's service token
(the stand-in in tests/standins/jupyterhub.py answers the same calls)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from lakehub.client import tls_context
from lakehub.server.notebooks.roles import ADMIN_GROUP

TOKEN_ID = re.compile(r"[a-z][0-9]{1,18}")


class HubAPIError(RuntimeError):
    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message)
        self.status = status


class JupyterHubAPI:
    def __init__(self, api_url: str, token: str) -> None:
        self._client = httpx.AsyncClient(
            base_url=api_url.rstrip("/") + "/",
            headers={"Authorization": f"token {token}"},
            timeout=30,
            verify=tls_context(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = await self._client.request(method, path, **kw)
        except httpx.TransportError as err:
            raise HubAPIError(f"JupyterHub is not answering ({err.__class__.__name__})") from err
        return resp

    async def user(self, name: str) -> dict[str, Any] | None:
        resp = await self._call("GET", f"users/{name}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise HubAPIError(f"JupyterHub refused to show {name}: {resp.text}")
        data: dict[str, Any] = resp.json()
        return data

    async def ensure_user(self, name: str, admin: bool) -> None:
        """The hub user exists; an administrator is in the administrators' group (never
        JupyterHub's admin: see lakehub.server.notebooks.roles)."""
        model = await self.user(name)
        if model is None:
            resp = await self._call("POST", f"users/{name}")
            if resp.status_code not in (201, 409):
                raise HubAPIError(f"JupyterHub refused to create {name}: {resp.text}")
        if (ADMIN_GROUP in ((model or {}).get("groups") or [])) != admin:
            method, path = ("POST" if admin else "DELETE"), f"groups/{ADMIN_GROUP}/users"
            resp = await self._call(method, path, json={"users": [name]})
            if resp.status_code != 200:
                raise HubAPIError(f"JupyterHub refused to update {name}: {resp.text}")

    async def delete_user(self, name: str) -> None:
        resp = await self._call("DELETE", f"users/{name}")
        if resp.status_code not in (204, 404):
            raise HubAPIError(f"JupyterHub refused to delete {name}: {resp.text}")

    async def new_token(self, name: str, note: str, expires_in: int | None) -> str:
        body: dict[str, Any] = {"note": note}
        if expires_in:
            body["expires_in"] = expires_in
        resp = await self._call("POST", f"users/{name}/tokens", json=body)
        if resp.status_code != 201:
            raise HubAPIError(f"JupyterHub refused a token for {name}: {resp.text}")
        token: str = resp.json()["token"]
        return token

    def new_token_now(self, name: str, note: str, expires_in: int) -> str:
        """:meth:`new_token` for code off the event loop (engines' threads)."""
        client = self._client
        try:
            resp = httpx.post(
                f"{client.base_url}users/{name}/tokens",
                headers={"Authorization": client.headers["Authorization"]},
                json={"note": note, "expires_in": expires_in},
                timeout=30,
                verify=tls_context(),
            )
        except httpx.TransportError as err:
            raise HubAPIError(f"JupyterHub is not answering ({err.__class__.__name__})") from err
        if resp.status_code != 201:
            raise HubAPIError(f"JupyterHub refused a token for {name}: {resp.text}")
        token: str = resp.json()["token"]
        return token

    async def tokens(self, name: str) -> list[dict[str, Any]]:
        """``name``'s API tokens (not those of browser sessions): id, note, created,
        expires_at, last_activity; never the token itself (JupyterHub keeps only hashes)."""
        resp = await self._call("GET", f"users/{name}/tokens")
        if resp.status_code != 200:
            raise HubAPIError(f"JupyterHub refused {name}'s tokens: {resp.text}")
        keep = ("id", "note", "created", "expires_at", "last_activity")
        return [
            {k: t.get(k) for k in keep}
            for t in resp.json().get("api_tokens", [])
            if not t.get("session_id")
        ]

    async def revoke_token(self, name: str, token_id: str) -> bool:
        """Revoke one of ``name``'s tokens; False if ``name`` has none by that id."""
        if not TOKEN_ID.fullmatch(token_id):  # JupyterHub's ids: a letter and digits
            return False
        resp = await self._call("DELETE", f"users/{name}/tokens/{token_id}")
        if resp.status_code == 404:
            return False
        if resp.status_code != 204:
            raise HubAPIError(f"JupyterHub refused to revoke a token of {name}: {resp.text}")
        return True

    async def metrics(self) -> str:
        """JupyterHub's own Prometheus page (``/hub/metrics``; our token has ``read:metrics``)."""
        url = str(self._client.base_url).removesuffix("api/") + "metrics"
        resp = await self._call("GET", url)
        if resp.status_code != 200:
            raise HubAPIError(f"JupyterHub refused its metrics: {resp.status_code}")
        return resp.text

    async def _users(self, state: str) -> list[dict[str, Any]]:
        """Every user with a server in ``state`` (ready | active), page by page."""
        users, offset = [], 0
        while True:
            resp = await self._call(
                "GET",
                "users",
                params={"state": state, "offset": offset, "limit": 200},
                headers={"Accept": "application/jupyterhub-pagination+json"},
            )
            if resp.status_code != 200:
                raise HubAPIError(f"JupyterHub refused the user list: {resp.status_code}")
            page = resp.json()
            users.extend(page["items"])
            following = (page.get("_pagination") or {}).get("next")
            if not following:
                return users
            offset = following["offset"]

    async def ready_servers(self) -> int:
        """Servers ready now, counted from the user list (JupyterHub's own running-servers gauge
        drops below zero after a failed spawn: its stop path decrements it unconditionally)."""
        users = await self._users("ready")
        return sum(1 for u in users for s in (u.get("servers") or {}).values() if s.get("ready"))

    async def active_servers(self) -> dict[str, dict[str, dict[str, Any]]]:
        """user -> server name -> its options, for every server running or starting."""
        return {
            u["name"]: {
                name: s.get("user_options") or {} for name, s in (u.get("servers") or {}).items()
            }
            for u in await self._users("active")
        }

    async def start_server(self, user: str, server: str, options: dict[str, Any]) -> bool:
        """Start a server; True if it is ready, False if it is still starting."""
        path = f"users/{user}/servers/{server}" if server else f"users/{user}/server"
        resp = await self._call("POST", path, json=options)
        if resp.status_code in (201, 202):
            return resp.status_code == 201
        raise HubAPIError(_message(resp), resp.status_code)

    async def stop_server(self, user: str, server: str) -> None:
        path = f"users/{user}/servers/{server}" if server else f"users/{user}/server"
        resp = await self._call("DELETE", path)
        if resp.status_code not in (202, 204):
            raise HubAPIError(_message(resp), resp.status_code)


def _message(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("message") or resp.text)
    except ValueError:
        return resp.text[:300]
