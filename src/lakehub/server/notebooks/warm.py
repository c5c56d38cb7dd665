"""A warm starter: import a server's modules once, fork a server per request.

Most of a notebook server's start is Python importing jupyter_server, JupyterLab and their
extensions, and most of a model replica's is importing MLflow, pandas and scikit-learn (1-3 s
each on two cores). This process, run by the environment's interpreter, imports them once
(``PRELOAD``: ``notebook`` or ``replica``); each start forks it, and the child drops to the
user's account *before* anything of the user's runs, then runs the server.

It never learns what it starts: it forks as soon as a connection arrives, and only the child
reads the request (the environment of one server, its tokens and keys included). So the
starter's memory, which every later child copies, holds nothing of any user's; the socket is
the hub account's alone.

Only the standard library and the environment's own packages may be imported here.

Protocol: one JSON line per connection,
``{"argv": [...], "env": {...}, "cwd": "...", "uid": N, "gid": N, "groups": [...],
"cgroups": [cgroup.procs files to join, before anything else], "log": "optional output file",
"module": true, "nice": N}`` (``module``, optional: run ``python -m argv[0] argv[1:]`` once
instead of the profile's server; ``nice``, optional: the child's priority), answered by the
child with ``{"pid": N}`` or ``{"error": "..."}``; an empty line (a health probe) is answered by
nothing.
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

NOTEBOOK = (
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


REPLICA = ("lakehub.singleuser.serve", "mlflow.pyfunc", "pandas", "sklearn.base")
# a Dask cluster's scheduler and nanny (run as modules); the nanny's worker process is its own
DASK = (
    "distributed.cli.dask_scheduler",
    "distributed.cli.dask_worker",
    "dask_gateway.scheduler_preload",
    "distributed.dashboard.scheduler",  # bokeh: a third of a scheduler's start
)
PRELOAD = {"notebook": NOTEBOOK, "replica": REPLICA, "dask": DASK}
# not imported by the starter: a pool of threads started at import, which a fork does not copy
# (MLflow imports polars only to offer it for datasets, and goes on without it)
UNFORKABLE = ("polars",)


def preload(profile: str) -> dict[str, str]:
    """Import the server's modules; returns the environment variables those imports set."""
    before = dict(os.environ)
    for name in UNFORKABLE:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # an import raises
    try:
        for name in PRELOAD[profile]:
            try:
                importlib.import_module(name)
            except ImportError as err:
                print(f"warm: cannot preload {name}: {err}", file=sys.stderr, flush=True)
    finally:
        for name in UNFORKABLE:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]  # a server imports it afresh, with threads of its own
    return {k: v for k, v in os.environ.items() if before.get(k) != v}


def _child(conn: socket.socket, profile: str, import_env: dict[str, str]) -> None:
    """In the forked child: read the request, become the user, answer with this pid, then run
    the server. Never returns."""
    code: int | str | None = 1
    try:
        conn.settimeout(10)
        line = conn.makefile("rb").readline()
        if not line.strip():
            os._exit(0)  # a health probe: connected and left
        request = json.loads(line)
        from lakehub.server.notebooks.limits import join  # the standard library only

        join(list(request.get("cgroups", [])))  # the server's limits hold from here on
        if "nice" in request:  # while still root: a niced starter's child may get it back
            with contextlib.suppress(PermissionError):
                os.setpriority(os.PRIO_PROCESS, 0, int(request["nice"]))
        os.setsid()
        if request.get("log"):  # opened with the starter's rights, before they are dropped
            fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
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
        if "dask" in sys.modules:  # its settings were read from the starter's environment
            sys.modules["dask"].config.refresh()
        if "tempfile" in sys.modules:  # so was TMPDIR, if an import asked for it
            sys.modules["tempfile"].tempdir = None  # type: ignore[attr-defined]
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.argv = list(request["argv"])
        _reply(conn, {"pid": os.getpid()})
        conn.close()
        code = _run(profile, bool(request.get("module")))
    except SystemExit as done:
        code = done.code
    except BaseException as err:  # noqa: BLE001 (report anything, then leave)
        _reply(conn, {"error": f"{err!r}"})
        print(f"warm: server failed: {err!r}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # as Python exits: None is success, an int is the status, anything else (a message) is 1
    os._exit(0 if code is None else code if isinstance(code, int) else 1)


def _run(profile: str, module: bool = False) -> int | str | None:
    if module:  # as ``python -m``: argv[0] names the module (it may raise SystemExit)
        import runpy

        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
        return None
    if profile == "replica":
        threads = os.environ.get("OMP_NUM_THREADS")
        if threads:  # the size's CPUs: BLAS was loaded by the starter, with one thread
            with contextlib.suppress(ImportError):
                from threadpoolctl import threadpool_limits

                threadpool_limits(int(threads))
        from lakehub.singleuser.serve import main as replica

        replica(sys.argv[1:])
        return 0
    from jupyterhub.singleuser import main

    code: int | str | None = main()
    return code


def serve(path: str, profile: str = "notebook") -> None:
    import_env = preload(profile)
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
            pid = os.fork()
            if pid == 0:
                server.close()
                _child(conn, profile, import_env)


def _reply(conn: socket.socket, answer: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the asker left; a forked server goes on regardless
        conn.sendall(json.dumps(answer).encode() + b"\n")


def request(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    ids: tuple[int, int, list[int]],
    log: str,
    cgroups: list[str] | None = None,
    module: bool = False,
    nice: int | None = None,
) -> dict[str, Any]:
    """A request of the protocol above: ``ids`` are the uid, gid and groups to become."""
    out: dict[str, Any] = {
        "argv": argv,
        "env": env,
        "cwd": cwd,
        "uid": ids[0],
        "gid": ids[1],
        "groups": ids[2],
        "cgroups": cgroups or [],
        "log": log,
        "module": module,
    }
    if nice is not None:
        out["nice"] = nice
    return out


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
    serve(sys.argv[1], *sys.argv[2:3])
