"""A stand-in for JupyterHub's REST API, for the in-process test layer (tests/inproc.py).

It answers exactly the calls the control plane makes (``lakehub.server.notebooks.
jupyterhub_api`` with the service token, and ``HubAuth.user_for_token`` with a user's token),
on 127.0.0.1, from memory:

- ``GET /hub/api/user`` with a user's token: that user's model with the scope
  ``access:services!service=lakehub``; an unknown token gets 403, which HubAuth reads as "no
  user";
- ``GET|POST|DELETE /hub/api/users/NAME``; ``POST|DELETE /hub/api/groups/G/users``;
- ``POST|GET /hub/api/users/NAME/tokens``: a fresh token for NAME, NAME's tokens (with ids and
  notes); ``DELETE /hub/api/users/NAME/tokens/ID``: revoked;
- ``GET /hub/api/users?state=...``: the users with servers, in one page;
- ``POST|DELETE /hub/api/users/NAME/server[s/S]``: a server is recorded as ready at once
  (after ``spawn_delay`` seconds, for a slow spawner); nothing is started;
- ``GET /hub/metrics``: an empty page.

Any other call, and any service call without the service token, is a 404 or 403, so a test
that reaches past what is modelled here fails instead of passing against an invention.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SCOPE = "access:services!service=lakehub"


class JupyterHubStandIn:
    def __init__(self, service_token: str) -> None:
        self.service_token = service_token
        self.users: dict[str, dict[str, Any]] = {}  # name -> {"groups": [...], "servers": {}}
        self.tokens: dict[str, str] = {}  # token -> user name
        self.token_info: dict[str, dict[str, Any]] = {}  # token -> its model (id, note, ...)
        self.spawn_delay = 0.0
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any = None) -> None:
                text = isinstance(body, str)  # a page of text (the metrics), not JSON
                data = body.encode() if text else b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                token = self.headers.get("Authorization", "").partition(" ")[2].strip()
                path = self.path.split("?", 1)[0]
                with stand_in.lock:
                    status, out = stand_in.answer(self.command, path, token, body)
                if status == 201 and "/server" in path and stand_in.spawn_delay:
                    time.sleep(stand_in.spawn_delay)
                self._answer(status, out)

            do_GET = do_POST = do_DELETE = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.api_url = f"http://127.0.0.1:{self.port}/hub/api"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> JupyterHubStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def model(self, name: str) -> dict[str, Any]:
        u = self.users[name]
        return {"kind": "user", "name": name, "admin": False, **u}

    def answer(self, method: str, path: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path == "/hub/api/user":
            name = self.tokens.get(token)
            if name is None or name not in self.users:
                return 403, {"message": "not a known token"}
            return 200, {**self.model(name), "scopes": [SCOPE]}
        if token != self.service_token:
            return 403, {"message": "the stand-in answers the service token only"}
        if path == "/hub/metrics":
            return 200, ""
        if path == "/hub/api/users" and method == "GET":
            items = [self.model(n) for n, u in self.users.items() if u["servers"]]
            return 200, {"items": items, "_pagination": {"next": None}}
        m = re.fullmatch(r"/hub/api/groups/([^/]+)/users", path)
        if m:
            for name in body.get("users", []):
                groups = self.users.setdefault(name, {"groups": [], "servers": {}})["groups"]
                if method == "POST" and m[1] not in groups:
                    groups.append(m[1])
                elif method == "DELETE" and m[1] in groups:
                    groups.remove(m[1])
            return 200, {}
        m = re.fullmatch(
            r"/hub/api/users/([^/]+)(/tokens(?:/[^/]+)?|/server|/servers/[^/]+)?", path
        )
        if not m:
            return 404, {"message": f"the stand-in does not model {method} {path}"}
        name, rest = m[1], m[2] or ""
        if rest == "" and method == "POST":
            if name in self.users:
                return 409, {"message": "exists"}
            self.users[name] = {"groups": [], "servers": {}}
            return 201, self.model(name)
        if name not in self.users:
            return 404, {"message": f"no user {name}"}
        if rest == "":
            if method == "DELETE":
                del self.users[name]
                self.tokens = {t: n for t, n in self.tokens.items() if n != name}
                self.token_info = {t: i for t, i in self.token_info.items() if t in self.tokens}
                return 204, None
            return 200, self.model(name)
        if rest == "/tokens" and method == "POST":
            token = secrets.token_hex(16)
            self.tokens[token] = name
            now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
            info = {"id": f"a{len(self.token_info) + 1}", "note": body.get("note", "")}
            self.token_info[token] = {**info, "created": now, "expires_at": None}
            return 201, {"token": token, **info}
        if rest == "/tokens" and method == "GET":
            mine = [i for t, i in self.token_info.items() if self.tokens.get(t) == name]
            return 200, {"api_tokens": [{**i, "last_activity": None} for i in mine]}
        if rest.startswith("/tokens/") and method == "DELETE":
            tid = rest.removeprefix("/tokens/")
            for token, info in list(self.token_info.items()):
                if info["id"] == tid and self.tokens.get(token) == name:
                    del self.token_info[token], self.tokens[token]
                    return 204, None
            return 404, {"message": f"no token {tid} of {name}"}
        server = rest.removeprefix("/server").removeprefix("s/")
        servers = self.users[name]["servers"]
        if method == "POST":
            servers[server] = {"name": server, "ready": True, "user_options": body}
            return 201, None
        if method == "DELETE":
            servers.pop(server, None)
            return 204, None
        return 404, {"message": f"the stand-in does not model {method} {path}"}
