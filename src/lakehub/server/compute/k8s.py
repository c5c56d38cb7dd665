"""Dask on Kubernetes: the dask-gateway configuration LakeHub's rules map to.

On one machine, ``lakehub up`` runs dask-gateway with a local backend. On Kubernetes the
production route is dask-gateway's own ``KubeBackend`` (the ``dask-gateway`` Helm chart), with
schedulers and workers in pods of the ``dask`` environment's image (see
:mod:`lakehub.server.notebooks.k8s`). :func:`render` writes the chart's ``gateway.extraConfig`` for
it:

- the same cluster options as on one machine (cores and memory per worker, idle timeout) and the
  same caps (workers per cluster, cores and memory per worker);
- the hub's JupyterHub as the authenticator (``access:services!service=dask-gateway``);
- each user's lake keys from a Kubernetes Secret ``lakehub-lake-<user>`` (keys
  ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``) in the cluster's
  namespace, put in the scheduler's and the workers' environment, so pods read the lake as
  their owner and never see anyone else's keys.

``python -m lakehub.server.compute.k8s --image IMAGE [--namespace NS]`` prints it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

TEMPLATE = """\
# dask-gateway on Kubernetes, rendered by lakehub.server.compute.k8s: the Helm chart's
# gateway.extraConfig
from dask_gateway_server.options import Float, Integer, Options

c.DaskGateway.backend_class = "dask_gateway_server.backends.kubernetes.KubeBackend"
c.KubeClusterConfig.namespace = {namespace}
c.KubeClusterConfig.image = {image}
c.KubeClusterConfig.scheduler_cmd = ["dask", "scheduler"]
c.KubeClusterConfig.worker_cmd = ["dask", "worker"]
c.KubeClusterConfig.idle_timeout = {idle_timeout}
c.KubeClusterConfig.cluster_max_workers = {max_workers}

c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_url = {hub_api_url}
c.JupyterHubAuthenticator.jupyterhub_service_name = "dask-gateway"


def lakehub_options(chosen, user):
    lake = {{"envFrom": [{{"secretRef": {{"name": "lakehub-lake-" + user.name}}}}]}}
    return {{
        "worker_cores": chosen.worker_cores,
        "worker_cores_limit": chosen.worker_cores,
        "worker_memory": int(chosen.worker_memory * 2**30),
        "worker_memory_limit": int(chosen.worker_memory * 2**30),
        "idle_timeout": chosen.idle_timeout or {idle_timeout},
        "worker_extra_container_config": lake,
        "scheduler_extra_container_config": lake,
    }}


c.Backend.cluster_options = Options(
    Integer("worker_cores", default=1, min=1, max={max_cores}, label="Cores per worker"),
    Float("worker_memory", default=2, min=0.25, max={max_memory_gib},
          label="Memory per worker (GiB)"),
    Integer("idle_timeout", default=0, min=0, label="Idle timeout (s; 0: the hub's)"),
    handler=lakehub_options,
)
"""


@dataclass(frozen=True)
class Limits:
    max_workers: int = 8
    max_worker_cores: int = 4
    max_worker_memory: int = 8 << 30
    idle_timeout: int = 1800


def render(
    image: str, hub_api_url: str, namespace: str = "lakehub", limits: Limits = Limits()
) -> str:
    """The ``gateway.extraConfig`` text: a dask-gateway config file (uses the ``c`` it gets)."""
    return TEMPLATE.format(
        namespace=json.dumps(namespace),
        image=json.dumps(image),
        hub_api_url=json.dumps(hub_api_url),
        idle_timeout=float(limits.idle_timeout),
        max_workers=limits.max_workers,
        max_cores=limits.max_worker_cores,
        max_memory_gib=limits.max_worker_memory / 2**30,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lakehub.server.compute.k8s",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--image", required=True, help="the dask environment's image (with its tag)")
    p.add_argument(
        "--hub-api-url",
        default="http://hub:8081/hub/api",
        help="JupyterHub's API as the gateway reaches it",
    )
    p.add_argument("--namespace", default="lakehub")
    args = p.parse_args(argv)
    print(render(args.image, args.hub_api_url, args.namespace), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
