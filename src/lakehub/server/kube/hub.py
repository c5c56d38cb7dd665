"""JupyterHub's configuration on Kubernetes: the one-machine file, then what differs.

The rendered ``jupyterhub_config.py`` loads LakeHub's own
(``lakehub/server/notebooks/jupyterhub_config.py``, found in the installed package) with
``load_subconfig``, so identity, roles, services, the idle culler and the server API's checks are
the same code as on one machine. Then it changes only what Kubernetes changes:

- JupyterHub listens on every address of its pod and user pods reach it through the ``hub``
  Service; the proxy is the ``proxy`` Deployment, reached at its ``proxy-api`` Service;
- the services are reached through Services: the control plane at ``api`` (it runs in the hub's
  pod, see :mod:`lakehub.server.kube.workloads`), Dask at the gateway chart's Traefik;
- KubeSpawner replaces LakeHub's spawner: the profile list rendered by
  :mod:`lakehub.server.notebooks.k8s`, pods in the users' namespace with a home volume per user,
  the Spark executors' pod template mounted where :mod:`lakehub.server.compute.spark_k8s` expects
  it, the Spark driver's service account, and the user's lake keys from the optional Secret
  ``lakehub-lake-<user>`` (the same Secret the Dask and Spark renderers read).
"""

from __future__ import annotations

import json

from lakehub.server.compute.spark_k8s import TEMPLATE_PATH, lake_secret_name
from lakehub.server.kube.settings import CONFIG_DIR, PORTS
from lakehub.server.notebooks.k8s import GID, UID

PROFILES = "kubespawner_profiles.json"
SPARK_TEMPLATE_KEY = "spark-executor-template.json"
SPARK_CONFIGMAP = "lakehub-spark"
SPARK_DRIVER = "lakehub-spark-driver"
HOME_SIZE = "10Gi"
GATEWAY_RELEASE = "dask-gateway"  # the Helm release name the docs install the chart as
GATEWAY_PREFIX = "/services/dask-gateway"


def svc(name: str, namespace: str, port: int) -> str:
    return f"http://{name}.{namespace}.svc.cluster.local:{port}"


def gateway_url(namespace: str) -> str:
    """The chart's Traefik (its Service ``traefik-<release>``), with the gateway's prefix."""
    return svc(f"traefik-{GATEWAY_RELEASE}", namespace, 80)


def notebook_env(namespace: str, lake_endpoint: str) -> dict[str, str]:
    """What every notebook pod gets besides KubeSpawner's own (no secret: the lake keys come
    from the user's Secret)."""
    api = svc("api", namespace, PORTS["api"]) + "/services/lakehub"
    return {
        "LAKEHUB_API_URL": api,
        "MLFLOW_TRACKING_URI": f"{api}/mlflow",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "AWS_ENDPOINT_URL": lake_endpoint,
        "S3_ENDPOINT_URL": lake_endpoint,
        "DASK_GATEWAY__ADDRESS": gateway_url(namespace) + GATEWAY_PREFIX,
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
    }


def jupyterhub_config(
    namespace: str, users_namespace: str, public_url: str, lake_endpoint: str
) -> str:
    """The hub's ``jupyterhub_config.py`` (run as ``jupyterhub -f``); see the module's rules."""
    services = {
        "lakehub": svc("api", namespace, PORTS["api"]),
        "dask-gateway": gateway_url(namespace),
    }
    volumes = [
        {"name": "home", "persistentVolumeClaim": {"claimName": "home-{username}"}},
        {"name": "spark", "configMap": {"name": SPARK_CONFIGMAP}},
    ]
    mounts = [
        {"name": "home", "mountPath": "/home/jovyan"},
        {"name": "spark", "mountPath": TEMPLATE_PATH, "subPath": SPARK_TEMPLATE_KEY},
    ]
    values = {
        "hub_connect": svc("hub", namespace, PORTS["hub"]),
        "proxy_api": svc("proxy-api", namespace, PORTS["proxy_api"]),
        "public_url": public_url,
        "services": services,
        "users_namespace": users_namespace,
        "profiles": f"{CONFIG_DIR}/{PROFILES}",
        "env": notebook_env(namespace, lake_endpoint),
        "volumes": volumes,
        "mounts": mounts,
        "lake_secret": lake_secret_name("{user}"),
    }
    v = {k: json.dumps(val) for k, val in values.items()}
    return f"""\
# JupyterHub on Kubernetes, rendered by lakehub.server.kube: LakeHub's one-machine
# configuration, then what Kubernetes changes.
import json
from pathlib import Path

import lakehub.server.notebooks
from kubernetes_asyncio.client import V1EnvFromSource, V1SecretEnvSource

load_subconfig(  # noqa: F821
    str(Path(lakehub.server.notebooks.__file__).parent / "jupyterhub_config.py")
)

c.JupyterHub.bind_url = {v["public_url"]}
c.JupyterHub.hub_bind_url = "http://0.0.0.0:{PORTS["hub"]}"
c.JupyterHub.hub_connect_url = {v["hub_connect"]}
c.ConfigurableHTTPProxy.api_url = {v["proxy_api"]}
SERVICE_URLS = {v["services"]}
c.JupyterHub.services = [
    {{**s, "url": SERVICE_URLS[s["name"]]}} if s["name"] in SERVICE_URLS else s
    for s in c.JupyterHub.services
]

c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.namespace = {v["users_namespace"]}
c.KubeSpawner.profile_list = json.loads(Path({v["profiles"]}).read_text())
c.KubeSpawner.uid = {UID}
c.KubeSpawner.gid = {GID}
c.KubeSpawner.fs_gid = {GID}
c.KubeSpawner.allow_privilege_escalation = False
c.KubeSpawner.container_security_context = {{"capabilities": {{"drop": ["ALL"]}}}}
c.KubeSpawner.pod_security_context = {{
    "runAsNonRoot": True,
    "seccompProfile": {{"type": "RuntimeDefault"}},
}}
c.KubeSpawner.start_timeout = 600  # a first pull of an environment's image
c.KubeSpawner.http_timeout = 120
c.KubeSpawner.extra_labels = {{"lakehub/owner": "{{username}}", "lakehub/component": "notebook"}}
c.KubeSpawner.environment = {v["env"]}
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.pvc_name_template = "home-{{username}}"
c.KubeSpawner.storage_capacity = "{HOME_SIZE}"
c.KubeSpawner.storage_access_modes = ["ReadWriteOnce"]
c.KubeSpawner.volumes = {v["volumes"]}
c.KubeSpawner.volume_mounts = {v["mounts"]}
# the Spark driver (client mode, in the notebook) starts executor pods with this account
c.KubeSpawner.service_account = "{SPARK_DRIVER}"
c.KubeSpawner.automount_service_account_token = True


def lake_keys(spawner, pod):
    \"\"\"The user's lake keys, from their Secret (optional: a pod starts without it).\"\"\"
    name = {v["lake_secret"]}.format(user=spawner.user.name)
    source = V1EnvFromSource(secret_ref=V1SecretEnvSource(name=name, optional=True))
    container = pod.spec.containers[0]
    container.env_from = [*(container.env_from or []), source]
    return pod


c.KubeSpawner.modify_pod_hook = lake_keys
"""
