"""Run code in a real Jupyter kernel through a single-user server's REST and websocket APIs."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from typing import Any

import httpx
import websocket

from lakehub.client import tls_context


def start_server(hub_url: str, name: str, token: str, timeout: float = 90) -> float:
    """Ask JupyterHub for ``name``'s server and wait until it answers; returns seconds taken."""
    headers = {"Authorization": f"token {token}"}
    t0 = time.monotonic()
    with httpx.Client(base_url=hub_url, headers=headers, timeout=60, verify=tls_context()) as c:
        r = c.post(f"/hub/api/users/{name}/server")
        assert r.status_code in (201, 202, 400), r.text  # 400: already running
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            model = c.get(f"/hub/api/users/{name}").json()
            server = model["servers"].get("")
            ready = server and server.get("ready")
            if ready and c.get(f"/user/{name}/api/status").status_code == 200:
                return time.monotonic() - t0
            time.sleep(0.1)
    raise AssertionError(f"{name}'s server did not become ready in {timeout} s")


def stop_server(hub_url: str, name: str, token: str) -> None:
    with httpx.Client(
        base_url=hub_url,
        headers={"Authorization": f"token {token}"},
        timeout=60,
        verify=tls_context(),
    ) as c:
        c.delete(f"/hub/api/users/{name}/server")
        for _ in range(300):
            if not c.get(f"/hub/api/users/{name}").json()["servers"]:
                return
            time.sleep(0.1)


class Kernel:
    def __init__(self, hub_url: str, name: str, token: str, server: str = "") -> None:
        self.base = f"{hub_url}/user/{name}/{server + '/' if server else ''}api"
        self.headers = {"Authorization": f"token {token}"}
        r = httpx.post(
            f"{self.base}/kernels",
            headers=self.headers,
            json={"name": "python3"},
            timeout=60,
            verify=tls_context(),
        )
        assert r.status_code == 201, r.text
        self.id = r.json()["id"]
        ws_url = self.base.replace("http://", "ws://") + f"/kernels/{self.id}/channels"
        self.ws = websocket.create_connection(
            ws_url, header=[f"Authorization: token {token}"], timeout=60
        )

    def run(self, code: str, timeout: float = 120) -> tuple[str, str | None]:
        """Execute ``code``; returns (stdout, error text or None)."""
        msg_id = uuid.uuid4().hex
        self.ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": "test",
                        "session": uuid.uuid4().hex,
                        "msg_type": "execute_request",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                    },
                }
            )
        )
        out: list[str] = []
        error: str | None = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg: dict[str, Any] = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                error = f"{msg['content']['ename']}: {msg['content']['evalue']}"
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out), error
        raise AssertionError("kernel did not finish in time")

    def close(self) -> None:
        self.ws.close()
        httpx.delete(
            f"{self.base}/kernels/{self.id}", headers=self.headers, timeout=30, verify=tls_context()
        )


class Terminal:
    """A terminal of a single-user server, over the websocket JupyterLab opens for it."""

    def __init__(self, hub_url: str, name: str, token: str) -> None:
        self.base = f"{hub_url}/user/{name}/api"
        self.headers = {"Authorization": f"token {token}"}
        r = httpx.post(
            f"{self.base}/terminals", headers=self.headers, timeout=60, verify=tls_context()
        )
        assert r.status_code == 200, r.text
        self.name = r.json()["name"]
        ws_url = self.base.replace("http://", "ws://").removesuffix("/api")
        self.ws = websocket.create_connection(
            f"{ws_url}/terminals/websocket/{self.name}",
            header=[f"Authorization: token {token}"],
            timeout=60,
        )

    def run(self, line: str, timeout: float = 60) -> str:
        """Type ``line`` and return what the terminal printed until it finished."""
        mark = uuid.uuid4().hex[:8]
        # the marker is printed in two halves, so the echo of the typed line never matches it
        self.ws.send(json.dumps(["stdin", f"{line}; printf '%s%s\\n' END {mark}\r"]))
        out = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and f"END{mark}" not in out:
            msg = json.loads(self.ws.recv())
            if msg[0] == "stdout":
                out += msg[1]
        assert f"END{mark}" in out, f"the terminal did not finish: {out[-2000:]}"
        return out.split(f"END{mark}")[0]

    def close(self) -> None:
        self.ws.close()
        httpx.delete(
            f"{self.base}/terminals/{self.name}",
            headers=self.headers,
            timeout=30,
            verify=tls_context(),
        )


def tiny_wheel(module: str, version: str = "0.1") -> bytes:
    """A tiny pure-Python wheel, made here so no test reaches a package index."""
    buf = io.BytesIO()
    dist = f"{module}-{version}.dist-info"
    files = {
        f"{module}.py": f"WHERE = __file__\nVERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    with zipfile.ZipFile(buf, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{dist}/RECORD", "".join(f"{p},,\n" for p in [*files, f"{dist}/RECORD"]))
    return buf.getvalue()
