"""The one-machine spawner: JupyterLab with a chosen environment and size, the user's lake keys.

Every start asks the control plane for a *plan* (``/api/internal/spawn-plan``): it checks the
chosen environment and size against the user's policies and quotas and answers with the
environment's build, the size, the idle timeout and the variables to inject, or with a message
that says why not, which the hub shows. The server itself always runs from the server
environment (``envs/default``); the chosen environment gives the kernel (``JUPYTER_PATH``),
terminals and ``pip`` (``PATH``), and a per-environment ``PYTHONUSERBASE`` under the home.

As root, each user's server runs under a unix account of its own (``lh-<name>``) whose home is
mode 0700, so users cannot read each other's files or signal each other's processes. Without
root, every server runs under the hub's account: users are *not* isolated from each other, and
the hub says so when it starts.
"""

from __future__ import annotations

import asyncio
import html
import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from jupyterhub.utils import random_port
from traitlets import Bool, Unicode, default

from lakehub.client import tls_context
from lakehub.server.notebooks import limits, records, warm
from lakehub.server.notebooks.accounts import ensure_account, unix_name
from lakehub.server.notebooks.specs import CLUSTER_ENVIRONMENTS


class SpawnRefused(RuntimeError):
    """A start the control plane refused; JupyterHub shows ``jupyterhub_message`` as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.jupyterhub_message = message


class LakeHubSpawner(LocalProcessSpawner):
    isolated = Bool(False, config=True, help="Run each server as the user's own unix account")
    homes_dir = Unicode(config=True, help="Parent of the users' home directories")
    env_dir = Unicode(config=True, help="The notebook environment to run")
    lakehub_api_url = Unicode(config=True, help="The LakeHub control plane, reached directly")
    lakehub_token = Unicode(config=True, help="The control plane's service token")
    hub_id = Unicode(config=True, help="Marks this hub's processes (for the orphan sweep)")
    warm_socket = Unicode("", config=True, help="The warm starter's socket; empty: plain Popen")
    run_dir = Unicode(config=True, help="Where each server's record is kept")

    @default("options_form")
    def _form_default(self) -> Callable[[Any], Any]:
        return render_form

    @default("apply_user_options")
    def _apply_default(self) -> Callable[[Any, Any], None]:
        def checked_at_start(spawner: Any, options: Any) -> None:
            """Options are checked by the control plane in ``start`` (see the module)."""

        return checked_at_start

    async def _control(self, method: str, path: str, body: Any) -> Any:
        async with httpx.AsyncClient(timeout=30, verify=tls_context()) as client:
            resp = await client.request(
                method,
                f"{self.lakehub_api_url}/api/internal/{path}/{self.user.name}",
                json=body,
                headers={"Authorization": f"token {self.lakehub_token}"},
            )
        if 400 <= resp.status_code < 500:
            try:
                detail = str(resp.json().get("detail"))
            except ValueError:
                detail = resp.text[:300]
            raise SpawnRefused(detail)
        if resp.status_code >= 300:
            raise RuntimeError(
                f"LakeHub could not prepare {self.user.name}'s server: "
                f"{resp.status_code} {resp.text[:200]}"
            )
        return resp.json() if resp.content else None

    async def options_from_form(self, form: dict[str, list[str]]) -> dict[str, Any]:
        """The form's choices; variables typed into it are saved as the user's own (secret ones
        encrypted) through the control plane, so no value is kept in JupyterHub's database."""
        names, values = form.get("var_name", []), form.get("var_value", [])
        kinds = form.get("var_kind", [])
        given = {
            n.strip(): {"value": v, "secret": k == "secret"}
            for n, v, k in zip(names, values, kinds, strict=False)
            if n.strip()
        }
        if given:
            await self._control("POST", "env", given)
        return {k: form[k][0] for k in ("environment", "size") if form.get(k, [""])[0]}

    @property
    def home(self) -> str:
        return str(Path(self.homes_dir) / self.user.name)

    def _ensure_account(self) -> None:
        if self.isolated:
            ensure_account(self.user.name, Path(self.home))
        else:
            Path(self.home).mkdir(mode=0o700, parents=True, exist_ok=True)

    _limits: limits.Limits | None = None  # one per hub process: detect() probes the machine

    def enforcer(self) -> limits.Limits:
        cls = type(self)
        if cls._limits is None:
            cls._limits = limits.detect(limits.root_name_for(self.hub_id))
            if not cls._limits.enforced:
                self.log.warning(
                    "Notebook servers get NO memory or CPU limits: %s", cls._limits.reason
                )
        return cls._limits

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        cgroups = list(getattr(self, "_cgroups", []))
        if self.isolated:
            setuid = set_user_setuid(unix_name(name))

            def preexec_isolated() -> None:
                limits.join(cgroups)
                setuid()

            return preexec_isolated
        home = self.home

        def preexec() -> None:
            limits.join(cgroups)
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
        env.update(
            {
                k: v
                for k, v in getattr(self, "_lake_env", {}).items()
                if not (k in env and k.startswith(own))
            }
        )
        env.update(getattr(self, "_plan_env", {}))
        env["LAKEHUB_HUB_ID"] = self.hub_id
        # MLflow's client speaks to LakeHub's tracking server with the server's own token
        if env.get("JUPYTERHUB_API_TOKEN"):
            env["MLFLOW_TRACKING_TOKEN"] = env["JUPYTERHUB_API_TOKEN"]
        env.pop("VIRTUAL_ENV", None)
        env.pop("PYTHONPATH", None)
        return env

    def get_args(self) -> list[str]:
        return [*super().get_args(), *self.jupyter_args()]

    def jupyter_args(self) -> list[str]:
        """Where JupyterLab keeps what a person changes, and the terminal's shell.

        JupyterLab computes its settings and workspaces directories when it is imported (the
        warm starter imports it as the hub's account), so they are given here, in the user's
        home. Terminals run an interactive shell that is not a login shell: a login shell reads
        ``/etc/profile``, which resets ``PATH`` and drops the environment's ``python``, ``pip``
        and the ``lakehub`` command."""
        lab = f"{self.home}/.jupyter/lab"
        return [
            f"--LabApp.user_settings_dir={lab}/user-settings",
            f"--LabApp.workspaces_dir={lab}/workspaces",
            "--ServerApp.terminado_settings=shell_command=/bin/bash -i",
        ]

    async def start(self) -> Any:
        self.cmd = [f"{self.env_dir}/bin/jupyterhub-singleuser"]
        options = dict(self.user_options or {})
        plan = await self._control("POST", "spawn-plan", {"server": self.name, "options": options})
        self._lake_env = plan["env"]
        chosen, size = plan["environment"], plan["size"]
        user_base = f"{self.home}/.local/lakehub/{chosen}"  # pip install --user, per environment
        self._plan_env = {
            "PATH": f"{user_base}/bin:{plan['path']}/bin:{self.env_dir}/bin:"
            "/usr/local/bin:/usr/bin:/bin",
            "JUPYTER_PATH": f"{plan['path']}/share/jupyter",  # the environment's kernel spec
            "PYTHONUSERBASE": user_base,
            # every Jupyter path in the user's home (the hub's account may have set others)
            "JUPYTER_CONFIG_DIR": f"{self.home}/.jupyter",
            "JUPYTER_DATA_DIR": f"{self.home}/.local/share/jupyter",
            "JUPYTER_RUNTIME_DIR": f"{self.home}/.local/share/jupyter/runtime",
            "LAKEHUB_ENVIRONMENT": chosen,
            "LAKEHUB_ENVIRONMENT_BUILD": os.path.basename(plan["path"].rstrip("/")),
            "LAKEHUB_SIZE": size["name"],
            "LAKEHUB_MEMORY_LIMIT": str(size["memory"]),
            "MEM_LIMIT": str(size["memory"]),  # as jupyter-resource-usage reads them
            "CPU_LIMIT": str(size["cpus"]),
        }
        if CLUSTER_ENVIRONMENTS.get(chosen) == "spark":  # a cluster of its own, stopped with it
            self._plan_env.update(
                await self._control("POST", "spark-server", {"server": self.name})
            )
        enforcer = self.enforcer()
        self._cgroups = await asyncio.to_thread(
            enforcer.prepare,
            limits.server_key(self.user.name, self.name),
            size["cpus"],
            size["memory"],
        )
        record = {
            "environment": chosen,
            "size": size["name"],
            "cpus": size["cpus"],
            "memory": size["memory"],
            "cull_timeout": plan["cull_timeout"],
            "limits": enforcer.reason or "enforced",
        }
        records.write(Path(self.run_dir), self.user.name, self.name, record)
        self._ensure_account()
        if not (self.warm_socket and os.path.exists(self.warm_socket)):
            return await super().start()
        return await self._warm_start()

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        try:  # the clusters started with the server go with it
            await self._control("POST", "server-stopped", {"server": self.name})
        except (SpawnRefused, RuntimeError, httpx.HTTPError) as err:
            self.log.warning("Could not stop the clusters of %s: %s", self._log_name, err)
        # kernels and anything else the server left behind go with its group
        try:
            await asyncio.to_thread(
                self.enforcer().release, limits.server_key(self.user.name, self.name)
            )
        except (OSError, TimeoutError) as err:
            self.log.warning("Could not remove %s's limits group: %s", self._log_name, err)
        records.remove(Path(self.run_dir), self.user.name, self.name)

    async def _warm_start(self) -> Any:
        """Fork the server from the warm starter (see :mod:`lakehub.server.notebooks.warm`)."""
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
        request = {
            "argv": argv,
            "env": env,
            "cwd": self.home,
            "uid": uid,
            "gid": gid,
            "groups": groups,
            "cgroups": self._cgroups,
        }
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


async def render_form(spawner: LakeHubSpawner) -> str:
    """The spawn form: the environments and sizes this user may pick, variables to add."""
    async with httpx.AsyncClient(timeout=30, verify=tls_context()) as client:
        resp = await client.get(
            f"{spawner.lakehub_api_url}/api/internal/spawn-options/{spawner.user.name}",
            headers={"Authorization": f"token {spawner.lakehub_token}"},
        )
    resp.raise_for_status()
    opts = resp.json()
    chosen = spawner.user_options or {}
    env_default = chosen.get("environment") or opts["default_environment"]
    size_default = chosen.get("size") or opts["default_size"]
    e = html.escape
    rows = []
    for env in sorted(opts["environments"], key=lambda x: (x["name"] != env_default, x["name"])):
        usable = env["usable"]
        progress = f": {env['progress']}" if env["progress"] else ""
        state = "" if usable else f" ({env['status']}{progress})"
        picked = " checked" if env["name"] == env_default and usable else ""
        rows.append(
            f'<label class="lh-env"><input type="radio" name="environment" '
            f'value="{e(env["name"])}"{picked}{"" if usable else " disabled"}> '
            f"<b>{e(env['name'])}</b>{e(state)}: {e(env['description'])}"
            f"<br><small>{e(', '.join(env['highlights']))}</small></label><br>"
        )
    sizes = "".join(
        f'<option value="{e(z["name"])}"{" selected" if z["name"] == size_default else ""}>'
        f"{e(z['name'])}: {e(z['description'] or '')}</option>"
        for z in opts["sizes"]
    )
    timeout = opts["idle_timeout"]
    idle = (
        f"Idle servers stop after {timeout // 60} min; your files stay."
        if timeout
        else "Idle servers are never stopped."
    )
    var_row = (
        '<div class="lh-var"><input name="var_name" placeholder="NAME"> '
        '<input name="var_value" placeholder="value" type="password" autocomplete="off"> '
        '<select name="var_kind"><option value="secret">secret</option>'
        '<option value="plain">plain</option></select></div>'
    )
    return f"""
<div id="lakehub-spawn-form">
<h3>Environment</h3>
{"".join(rows)}
<h3>Size</h3>
<select name="size" id="lh-size" class="form-control">{sizes}</select>
<p><small>Memory and CPU are limits for the whole server, kernels included.
{e(idle)}</small></p>
<h3>Variables</h3>
<p><small>Saved as your variables for all your servers (see Variables in LakeHub); secret values
are encrypted and never shown again.</small></p>
{var_row * 2}
</div>"""
