"""The one-machine spawner: JupyterLab from a LakeHub environment, with the user's lake keys.

As root, each user's server runs under a unix account of its own (``lh-<name>``) whose home is
mode 0700, so users cannot read each other's files or signal each other's processes. Without
root, every server runs under the hub's account: users are *not* isolated from each other, and
the hub says so when it starts.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from jupyterhub.utils import random_port
from traitlets import Bool, Unicode

from lakehub.notebooks import warm
from lakehub.notebooks.accounts import ensure_account, unix_name


class LakeHubSpawner(LocalProcessSpawner):
    isolated = Bool(False, config=True, help="Run each server as the user's own unix account")
    homes_dir = Unicode(config=True, help="Parent of the users' home directories")
    env_dir = Unicode(config=True, help="The notebook environment to run")
    lakehub_api_url = Unicode(config=True, help="The LakeHub control plane, reached directly")
    lakehub_token = Unicode(config=True, help="The control plane's service token")
    hub_id = Unicode(config=True, help="Marks this hub's processes (for the orphan sweep)")
    warm_socket = Unicode("", config=True, help="The warm starter's socket; empty: plain Popen")

    @property
    def home(self) -> str:
        return str(Path(self.homes_dir) / self.user.name)

    def _ensure_account(self) -> None:
        if self.isolated:
            ensure_account(self.user.name, Path(self.home))
        else:
            Path(self.home).mkdir(mode=0o700, parents=True, exist_ok=True)

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        if self.isolated:
            return set_user_setuid(unix_name(name))  # type: ignore[no-any-return]
        home = self.home

        def preexec() -> None:
            os.chdir(home)

        return preexec

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env["USER"] = unix_name(self.user.name) if self.isolated else self.user.name
        env["HOME"] = self.home
        env["SHELL"] = "/bin/bash"
        return env

    def get_env(self) -> dict[str, str]:
        env: dict[str, str] = super().get_env()
        # JupyterHub's own variables stay as it set them, whatever the control plane sent
        own = ("JUPYTERHUB_", "JPY_")
        env.update({k: v for k, v in getattr(self, "_lake_env", {}).items()
                    if not (k in env and k.startswith(own))})  # fmt: skip
        env["PATH"] = f"{self.env_dir}/bin:/usr/local/bin:/usr/bin:/bin"
        env["LAKEHUB_HUB_ID"] = self.hub_id
        env.pop("VIRTUAL_ENV", None)
        env.pop("PYTHONPATH", None)
        return env

    async def start(self) -> Any:
        self.cmd = [f"{self.env_dir}/bin/jupyterhub-singleuser"]
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.get(
                f"{self.lakehub_api_url}/api/internal/spawn-env/{self.user.name}",
                headers={"Authorization": f"token {self.lakehub_token}"},
            )
        if resp.status_code != 200:
            raise RuntimeError(f"LakeHub could not prepare {self.user.name}'s lake access: "
                               f"{resp.status_code} {resp.text[:200]}")  # fmt: skip
        self._lake_env = resp.json()
        self._ensure_account()
        if not (self.warm_socket and os.path.exists(self.warm_socket)):
            return await super().start()
        return await self._warm_start()

    async def _warm_start(self) -> Any:
        """Fork the server from the warm starter (see :mod:`lakehub.notebooks.warm`)."""
        if self.port == 0:  # type: ignore[has-type]
            self.port = random_port()
        env = self.get_env()
        argv = [*self.cmd, *self.get_args()]
        if self.isolated:
            pw = pwd.getpwnam(unix_name(self.user.name))
            uid, gid = pw.pw_uid, pw.pw_gid
            groups = os.getgrouplist(pw.pw_name, gid)
        else:
            uid, gid, groups = os.getuid(), os.getgid(), os.getgroups()
        request = {"argv": argv, "env": env, "cwd": self.home, "uid": uid, "gid": gid,
                   "groups": groups}  # fmt: skip
        self.log.info("Spawning %s warm as uid %d", self.user.name, uid)
        self.pid = await asyncio.to_thread(warm.spawn, self.warm_socket, request)
        self.proc = None
        ip = self.ip or "127.0.0.1"
        await self._until_listening(ip, self.port)
        return (ip, self.port)

    async def _until_listening(self, ip: str, port: int) -> None:
        """Return once the server accepts connections (or has died, or time is up).

        JupyterHub then finds it up at its first check instead of after a backoff sleep.
        """
        deadline = asyncio.get_running_loop().time() + self.start_timeout
        while asyncio.get_running_loop().time() < deadline:
            try:
                _, writer = await asyncio.open_connection(ip, port)
            except OSError:
                if await self.poll() is not None:
                    return  # it died; JupyterHub reports that
                await asyncio.sleep(0.01)
                continue
            writer.close()
            return
