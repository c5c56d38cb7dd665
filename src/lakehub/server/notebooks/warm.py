"""A warm starter for notebook servers: import JupyterLab once, fork a server per spawn.

Most of a single-user server's start is Python importing jupyter_server, JupyterLab and their
extensions (1-2 s on two cores). This process, run by the notebook environment's interpreter,
imports them once; each spawn forks it, and the child drops to the user's account *before*
anything of the user's runs, then starts the server. It holds no secrets: each request carries
the environment for that one server, over a unix socket only the hub's account can open.

Only the standard library and the environment's Jupyter packages may be imported here.

Protocol: one JSON line per connection,
``{"argv": [...], "env": {...}, "cwd": "...", "uid": N, "gid": N, "groups": [...],
"cgroups": [cgroup.procs files to join, before anything else]}``,
answered by ``{"pid": N}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import socket
import sys
from typing import Any

PRELOAD = (
    "jupyterhub.singleuser",
    "jupyterlab.labapp",  # not labhubapp: importing it patches handlers for the non-extension mode
    "jupyter_server.serverapp",
    "jupyter_server.services.kernels.kernelmanager",
    "jupyter_server.services.contents.largefilemanager",
    "jupyterlab_server",
    "jupyter_lsp",
    "jupyter_server_terminals",
    "notebook_shim",
    "jupyter_client.ioloop",
)


def preload() -> dict[str, str]:
    """Import the server's modules; returns the environment variables those imports set."""
    before = dict(os.environ)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as err:
            print(f"warm: cannot preload {name}: {err}", file=sys.stderr, flush=True)
    return {k: v for k, v in os.environ.items() if before.get(k) != v}


def _child(request: dict[str, Any], import_env: dict[str, str]) -> None:
    """In the forked child: become the user, then run the server. Never returns."""
    try:
        from lakehub.server.notebooks.limits import join  # the standard library only

        join(list(request.get("cgroups", [])))  # the server's limits hold from here on
        os.setsid()
        gid, uid = int(request["gid"]), int(request["uid"])
        if os.geteuid() == 0 and uid != 0:
            os.setgid(gid)
            os.setgroups([int(g) for g in request.get("groups", [])])
            os.setuid(uid)
        elif uid != os.geteuid():
            raise PermissionError("the warm starter cannot switch accounts without root")
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(import_env)  # as if the imports had just run in this process
        os.environ.update(request["env"])
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.argv = list(request["argv"])
        from jupyterhub.singleuser import main

        code = main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    except BaseException as err:  # noqa: BLE001 (report anything, then leave)
        print(f"warm: server failed: {err!r}", file=sys.stderr, flush=True)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def serve(path: str) -> None:
    import_env = preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    server.bind(path)
    os.umask(old)
    server.listen(16)
    print(f"warm: ready on {path}", flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            try:
                line = conn.makefile("rb").readline()
                if not line.strip():
                    continue  # a health probe: connected and left
                request = json.loads(line)
            except (OSError, ValueError) as err:
                _reply(conn, {"error": f"bad request: {err}"})
                continue
            pid = os.fork()
            if pid == 0:
                server.close()
                conn.close()
                _child(request, import_env)
            _reply(conn, {"pid": pid})


def _reply(conn: socket.socket, answer: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the asker left; a forked server goes on regardless
        conn.sendall(json.dumps(answer).encode() + b"\n")


def spawn(path: str, request: dict[str, Any], timeout: float = 10.0) -> int:
    """Ask the warm starter at ``path`` for a server; returns its pid."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(request).encode() + b"\n")
        reply = json.loads(s.makefile("rb").readline())
    if "pid" not in reply:
        raise RuntimeError(f"warm starter: {reply.get('error', reply)}")
    return int(reply["pid"])


if __name__ == "__main__":
    serve(sys.argv[1])
