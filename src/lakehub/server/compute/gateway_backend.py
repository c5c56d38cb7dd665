"""What runs inside dask-gateway-server for LakeHub (loaded by ``gateway_config.py``).

- Every new cluster is planned by the control plane first (``/api/internal/compute-plan``): it
  checks the owner's limits against what runs already and answers with the cluster's caps and
  idle timeout, or with a sentence that says why not. So ``lakehub.compute.dask()``, the plain
  ``dask_gateway.Gateway().new_cluster()`` in a notebook and the API obey the same rules.
- The owner's lake keys reach the scheduler and workers through their environment when each
  process starts; they are fetched from the control plane then and never stored in the
  gateway's database.
- As root, :class:`UserLocalBackend` runs each cluster as its owner's ``lh-<name>`` account.
  Upstream ``LocalBackend.setup_working_directory`` extends its list of paths with a *string*
  (``paths.extend(path)``), so it chowns every character of the certificate's path, ``/`` among
  them, to the cluster's user. Ours builds the directory itself and chowns exactly the three
  paths it made. (Upstream fix: ``paths.append(path)``.)
- ``lakehub up`` starts the gateway niced (its start must not slow the hub's), and processes
  inherit that: a cluster's scheduler and workers get back the priority of the user's notebooks.
- :class:`HubOrServiceAuthenticator` takes JupyterHub tokens, and lets the control plane act for
  a user with the hub's service token plus ``X-LakeHub-User``.
- The proxy gets no route to a scheduler's dashboard (upstream adds one, open to anyone): those
  paths reach the gateway's web app, which shows a dashboard to its owner only
  (:mod:`lakehub.server.compute.dashboards`).
"""

from __future__ import annotations

import contextlib
import hmac
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web
from dask_gateway_server.auth import JupyterHubAuthenticator, unauthorized
from dask_gateway_server.backends.local import LocalBackend, UnsafeLocalBackend
from dask_gateway_server.models import User
from traitlets import HasTraits, Unicode

from lakehub.server.compute.dashboards import Dashboards
from lakehub.server.compute.dask_warm import PRE_SPAWN, WarmStarter
from lakehub.server.notebooks.accounts import ensure_account, unix_name

ENV_TTL = 60.0
REFUSALS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    422: web.HTTPUnprocessableEntity,
    503: web.HTTPServiceUnavailable,
}


class _Planned(HasTraits):
    """Mixed into a dask-gateway backend: plans with the control plane, injects lake keys."""

    lakehub_api_url = Unicode(config=True, help="The control plane, with its prefix.")
    lakehub_token = Unicode(config=True, help="The control plane's service token.")
    compute_bind = Unicode(
        "127.0.0.1",
        config=True,
        help="Where schedulers and workers listen (workers may be elsewhere).",
    )
    warm_python = Unicode("", config=True, help="The dask environment's interpreter ('': off).")
    warm_socket = Unicode("", config=True, help="The warm starter's socket.")
    _env_cache: dict[str, tuple[float, dict[str, str]]]
    _warm: WarmStarter

    async def setup(self, app: web.Application) -> None:
        await super().setup(app)  # type: ignore[misc]
        self._warm = WarmStarter(self.warm_python, self.warm_socket)
        self._warm.start()

    async def cleanup(self) -> None:
        self._warm.stop()
        await super().cleanup()  # type: ignore[misc]

    def process_ids(self, cluster: Any) -> tuple[int, int, list[int]]:
        """The ids a cluster's processes run as (the gateway's own, unless overridden)."""
        return os.getuid(), os.getgid(), os.getgroups()

    def get_scheduler_command(self, cluster: Any) -> Any:
        """Upstream's, with :mod:`lakehub.compute.dask_outside` loaded after dask-gateway's
        preload: a worker that joins from another host is neither retired nor counted. Not in
        an environment built before that module (until its rebuild): a missing preload would
        stop the scheduler."""
        cmd = list(super().get_scheduler_command(cluster))  # type: ignore[misc]
        env = Path(cmd[0]).parent.parent  # the environment's bin/dask
        upstream = "dask_gateway.scheduler_preload"
        if upstream in cmd and any(
            env.glob("lib/python3*/site-packages/lakehub/compute/dask_outside.py")
        ):
            # right after it, before its options: what follows the first option the scheduler
            # does not know is handed to the preloads (and dask-gateway's refuses any other)
            at = cmd.index(upstream) + 1
            cmd[at:at] = ["--preload", "lakehub.compute.dask_outside"]
        return cmd

    def get_worker_command(
        self, cluster: Any, worker_name: str, scheduler_address: Any = None
    ) -> Any:
        """Upstream's, without a dashboard of the worker's own: the front door reaches only the
        scheduler's (which shows every worker), and bokeh is a third of a worker's start."""
        cmd = list(super().get_worker_command(cluster, worker_name, scheduler_address))  # type: ignore[misc]
        if "--dashboard-address" in cmd:
            at = cmd.index("--dashboard-address")
            cmd[at : at + 2] = ["--no-dashboard"]
        return cmd

    async def start_process(self, cluster: Any, cmd: list[str], env: Any, name: str) -> int:
        """Forked from the warm starter (:mod:`.dask_warm`); upstream's plain process if that
        cannot be had."""
        workdir = cluster.state["workdir"]
        log_path = os.path.join(self.get_logs_directory(workdir), name + ".log")  # type: ignore[attr-defined]
        ids = self.process_ids(cluster)
        pid = await self._warm.spawn(cmd, dict(env), workdir, ids, log_path)
        if pid is not None:
            return pid
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log_path)  # upstream makes it anew (O_EXCL)
        started: int = await super().start_process(cluster, cmd, env, name)  # type: ignore[misc]
        return started

    @property
    def default_host(self) -> str:
        return str(self.compute_bind)

    async def _lakehub(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"token {self.lakehub_token}"}
        timeout = aiohttp.ClientTimeout(total=15)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                method, self.lakehub_api_url + path, json=body, headers=headers
            ) as resp,
        ):
            data = await resp.json(content_type=None)
            if resp.status >= 400:  # the caller gets the control plane's status and sentence
                refusal = REFUSALS.get(resp.status, web.HTTPBadGateway)
                raise refusal(reason=" ".join(str(data.get("detail", data)).split()))
            return data

    async def process_cluster_options(self, user: User, request: Any) -> Any:
        options, config = await super().process_cluster_options(user, request)  # type: ignore[misc]
        running = [
            {
                "owner": c.username,
                "name": c.name,
                "memory": (c.config or {}).get("cluster_max_memory") or 0,
            }
            for c in self.db.list_clusters()  # type: ignore[attr-defined]
        ]
        plan = await self._lakehub(
            "POST",
            f"/api/internal/compute-plan/{user.name}",
            {
                "kind": "dask",
                "worker_cores": config.worker_cores,
                "worker_memory": config.worker_memory,
                "running": running,
                "idle_timeout": options.get("idle_timeout") or None,
                "head_cores": config.scheduler_cores,
                "head_memory": config.scheduler_memory,
            },
        )
        for key in (
            "cluster_max_workers",
            "cluster_max_cores",
            "cluster_max_memory",
            "idle_timeout",
        ):
            setattr(config, key, plan[key])
        return options, config

    async def _fetch_owner_env(self, username: str) -> None:
        cache = self.__dict__.setdefault("_env_cache", {})
        hit = cache.get(username)
        if hit is None or time.monotonic() - hit[0] > ENV_TTL:
            env = await self._lakehub("GET", f"/api/internal/compute-env/{username}")
            cache[username] = (time.monotonic(), env)

    def get_env(self, cluster: Any) -> dict[str, str]:
        env: dict[str, str] = super().get_env(cluster)  # type: ignore[misc]
        _, owner = self.__dict__.get("_env_cache", {}).get(cluster.username, (0, {}))
        # dask-gateway's own idle check compares the scheduler's wall-clock transition times
        # with its event loop's monotonic clock, so it never fires with current distributed:
        # distributed's own check (one clock) stops an idle scheduler instead
        idle = f"{float(cluster.config.idle_timeout or 0):g}s"
        # the cluster's temporary files (workers' spilled data included) in its own working
        # directory, the owner's alone and removed with the cluster: not the machine's /tmp
        workdir = (cluster.state or {}).get("workdir")
        private = {"TMPDIR": workdir, "DASK_TEMPORARY_DIRECTORY": workdir} if workdir else {}
        return {
            **env,
            **owner,
            **private,
            "DASK_DISTRIBUTED__SCHEDULER__IDLE_TIMEOUT": idle,
            # a worker forked from its nanny, which has imported everything already: half a
            # second of a new interpreter saved on every worker's start (the nanny still
            # watches the worker's memory and restarts it)
            "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD": "fork",
            **PRE_SPAWN,
        }

    async def _check_cluster_proxied(self, cluster: Any) -> None:
        """Upstream's, less the route from the proxy to the dashboard (see the module's doc)."""
        if not cluster.added_to_proxies:
            await self.proxy.add_route(  # type: ignore[attr-defined]
                kind="SNI", sni=cluster.name, target=cluster.scheduler_address
            )
            cluster.added_to_proxies = True

    async def do_start_cluster(self, cluster: Any) -> Any:
        await self._fetch_owner_env(cluster.username)
        async for state in super().do_start_cluster(cluster):  # type: ignore[misc]
            yield state

    async def do_start_worker(self, worker: Any) -> Any:
        await self._fetch_owner_env(worker.cluster.username)
        async for state in super().do_start_worker(worker):  # type: ignore[misc]
            yield state


def _unnice() -> None:
    """In a cluster's process, before it runs anything: the priority of a notebook (0) instead
    of the gateway's. Lowering it takes root (or an RLIMIT_NICE), else it stays as it is."""
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, 0)


class SharedAccountBackend(_Planned, UnsafeLocalBackend):
    """Not root: every cluster runs under the hub's own account (no isolation between users)."""

    def make_preexec_fn(self, cluster: Any) -> Any:
        inner = super().make_preexec_fn(cluster)

        def preexec() -> None:
            _unnice()
            inner()

        return preexec


class UserLocalBackend(_Planned, LocalBackend):
    """Root: each cluster runs as its owner's ``lh-<name>`` account, in a directory of its own."""

    homes_dir = Unicode(config=True, help="Where users' homes live (made on first use).")

    def set_file_permissions(self, paths: list[str], username: str) -> None:
        pw = ensure_account(username, _home(self.homes_dir, username))
        for p in paths:
            os.chown(p, pw.pw_uid, pw.pw_gid)

    def process_ids(self, cluster: Any) -> tuple[int, int, list[int]]:
        import pwd

        pw = pwd.getpwnam(unix_name(cluster.username))
        return pw.pw_uid, pw.pw_gid, [pw.pw_gid]

    def make_preexec_fn(self, cluster: Any) -> Any:
        uid, gid, groups = self.process_ids(cluster)
        workdir = cluster.state["workdir"]

        def preexec() -> None:
            _unnice()  # while still root
            os.setgid(gid)
            os.setgroups(groups)
            os.setuid(uid)
            os.chdir(workdir)

        return preexec

    def get_env(self, cluster: Any) -> dict[str, str]:
        env: dict[str, str] = super().get_env(cluster)
        env.update(
            USER=unix_name(cluster.username), HOME=str(_home(self.homes_dir, cluster.username))
        )
        return env

    def setup_working_directory(self, cluster: Any) -> str:
        workdir = os.path.join(self.clusters_directory, cluster.name)
        certs, logs = self.get_certs_directory(workdir), self.get_logs_directory(workdir)
        for path in (workdir, certs, logs):
            os.makedirs(path, 0o700, exist_ok=True)
        cert_path, key_path = self._get_tls_paths(workdir)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        for path, data in ((cert_path, cluster.tls_cert), (key_path, cluster.tls_key)):
            with os.fdopen(os.open(path, flags, 0o600), "wb") as fh:
                fh.write(data)
        self.set_file_permissions([workdir, certs, logs, cert_path, key_path], cluster.username)
        return workdir


def _home(homes_dir: str, username: str) -> Path:
    return Path(homes_dir) / username


class HubOrServiceAuthenticator(JupyterHubAuthenticator):
    """JupyterHub tokens; or the control plane's token with ``X-LakeHub-User: <name>``."""

    lakehub_token = Unicode(config=True, help="The control plane's service token.")
    public_prefix = Unicode(config=True, help="The gateway's path behind the hub's front door.")
    public_url = Unicode(config=True, help="The hub's front door (dashboards' pages' origin).")

    async def setup(self, app: web.Application) -> None:
        await super().setup(app)
        Dashboards(
            self,
            self.public_prefix,
            self.public_url,
            self.jupyterhub_api_url,
            self.jupyterhub_api_token,
        ).install(app)

    async def user_for_token(self, token: str) -> User:
        """The hub's user behind a token; 401 when none, or it lacks access to the gateway."""
        user: User = await self.authenticate(
            SimpleNamespace(headers={"Authorization": f"jupyterhub {token}"})
        )
        return user

    async def authenticate_and_handle(self, request: Any, handler: Any) -> Any:
        """The control plane's calls never use, nor get, the cookie that caches a user."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme != "lakehub":
            return await super().authenticate_and_handle(request, handler)
        name = request.headers.get("X-LakeHub-User", "")
        if not name or not hmac.compare_digest(value.encode(), self.lakehub_token.encode()):
            raise unauthorized("jupyterhub")
        request["user"] = User(name)
        return await handler(request)
