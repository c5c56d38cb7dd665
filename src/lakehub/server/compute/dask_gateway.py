"""Dask clusters through dask-gateway, seen from the control plane (the ``Engine`` contract).

The gateway is a component of ``lakehub up`` (see ``gateway_config.py`` and
``gateway_backend.py``). The control plane talks to its REST API for one user at a time, with its
service token and ``X-LakeHub-User``; notebooks talk to it directly with their JupyterHub token
(``DASK_GATEWAY__*`` in their environment), so ``dask_gateway.Gateway()`` works unchanged.
"""

from __future__ import annotations

import logging
import threading
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx

from lakehub.server.compute.base import (
    Cluster,
    ClusterRequest,
    ComputeError,
    Engine,
    EngineContext,
)
from lakehub.server.config import Settings
from lakehub.server.runtime import Runtime

log = logging.getLogger("lakehub.compute")
GATEWAY_SERVICE = "dask-gateway"
KIND = "dask"


def scheduler_python(settings: Settings) -> Path:
    """The interpreter of the ``dask`` notebook environment: clusters run what notebooks run."""
    return settings.envs_dir / "dask" / "bin" / "python"


def notebook_env(runtime: Runtime, bind: str) -> dict[str, str]:
    """What a notebook server needs for ``dask_gateway.Gateway()`` to find the gateway."""
    return {
        "DASK_GATEWAY__ADDRESS": gateway_url(runtime),
        "DASK_GATEWAY__PUBLIC_ADDRESS": f"{runtime.front_url}/services/{GATEWAY_SERVICE}",
        "DASK_GATEWAY__PROXY_ADDRESS": proxy_address(runtime, bind),
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
    }


def proxy_address(runtime: Runtime, bind: str) -> str:
    """Where schedulers are reached (by clients and workers): ``compute_bind``'s port."""
    host = "127.0.0.1" if bind in ("0.0.0.0", "") else bind
    return f"gateway://{host}:{runtime.ports['gateway_tcp']}"


def gateway_url(runtime: Runtime) -> str:
    return f"http://127.0.0.1:{runtime.ports['gateway']}/services/{GATEWAY_SERVICE}"


class DaskEngine(Engine):
    kind = KIND

    @classmethod
    def of_hub(cls, hub: EngineContext) -> DaskEngine:
        """Clusters are planned by the gateway's backend itself (see ``gateway_backend.py``)."""
        return cls(hub.runtime, hub.service_token, hub.settings.compute_bind)

    def __init__(
        self, runtime: Runtime, service_token: str, bind: str = "127.0.0.1", timeout: float = 30.0
    ) -> None:
        self.runtime = runtime
        self.proxy_address = proxy_address(runtime, bind)
        self._http = httpx.Client(
            base_url=gateway_url(runtime) + "/api/v1",
            timeout=timeout,
            headers={"Authorization": f"lakehub {service_token}"},
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # acts for many users
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, owner: str, method: str, path: str, body: Any = None) -> Any:
        try:
            resp = self._http.request(method, path, json=body, headers={"X-LakeHub-User": owner})
        except httpx.TransportError as err:
            raise ComputeError(f"dask-gateway is not answering: {err}", 503) from None
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("error") or resp.text
            except ValueError:
                detail = resp.text
            status = resp.status_code if resp.status_code < 500 else 502
            raise ComputeError(str(detail).strip() or f"dask-gateway answered {status}", status)
        return resp.json() if resp.content else None

    def start(self, owner: str, request: ClusterRequest) -> Cluster:
        if request.cores != int(request.cores):
            raise ComputeError(f"a Dask worker takes whole cores (asked: {request.cores:g})")
        options = {
            "worker_cores": int(request.cores),
            "worker_memory": request.memory / 2**30,
            "idle_timeout": int(request.idle_timeout or 0),
        }
        name = self._call(owner, "POST", "/clusters/", {"cluster_options": options})["name"]
        if request.workers:  # a cluster scales once it runs: this call does not wait for that
            threading.Thread(
                target=self._scale_when_running,
                args=(owner, name, request.workers),
                name=f"scale-{name[:8]}",
                daemon=True,
            ).start()
        return self._cluster(
            owner, self._call(owner, "GET", f"/clusters/{name}"), workers=request.workers
        )

    def _scale_when_running(self, owner: str, name: str, workers: int) -> None:
        try:
            for _ in range(6):  # the gateway holds each call up to 20 s until it runs
                status = self._call(owner, "GET", f"/clusters/{name}?wait=1")["status"]
                if status != "PENDING":
                    break
            if status == "RUNNING":
                self._call(owner, "POST", f"/clusters/{name}/scale", {"count": workers})
            else:
                log.warning("cluster %s of %s did not start (%s)", name, owner, status.lower())
        except ComputeError as err:
            log.warning("could not scale cluster %s of %s: %s", name, owner, err)

    def list(self, owner: str | None = None) -> list[Cluster]:
        if owner is None:
            raise ComputeError("dask-gateway lists clusters per user", 400)
        found = self._call(owner, "GET", "/clusters/")
        return [self._cluster(owner, model) for model in found.values()]

    def stop(self, owner: str, name: str) -> None:
        self._call(owner, "DELETE", f"/clusters/{name}")

    def _cluster(self, owner: str, model: dict[str, Any], workers: int = 0) -> Cluster:
        opts = model.get("options") or {}
        route = model.get("dashboard_route")
        public = f"{self.runtime.front_url}/services/{GATEWAY_SERVICE}"
        return Cluster(
            kind=KIND,
            name=model["name"],
            owner=owner,
            status=model["status"].lower(),
            workers=workers,
            cores=float(opts.get("worker_cores", 0)),
            memory=int(float(opts.get("worker_memory", 0)) * 2**30),
            address=f"{self.proxy_address}/{model['name']}",
            dashboard_url=f"{public}{route}" if route else "",
            started=float(model.get("start_time") or 0) / 1000,
        )
