"""LakeHub on Kubernetes, the production route: plain manifests for ``kubectl apply -k``,
rendered from the settings. Pure functions: nothing is contacted, nothing is read but the
arguments, and the same arguments render the same files.

:func:`render` returns ``{file name: object or text}``: one Kubernetes object per YAML file,
``kustomization.yaml`` listing exactly those, the dask-gateway chart's values, the notebook
environments' Dockerfiles and KubeSpawner profiles, and ``secrets.txt``, the Secrets to create
(names and keys, never values). Rules:

- it reuses the renderers of each area rather than restating them: the profiles and images of
  :mod:`lakehub.server.notebooks.k8s`, the gateway's configuration of
  :mod:`lakehub.server.compute.k8s`, the executors' pod template of
  :mod:`lakehub.server.compute.spark_k8s`, and JupyterHub's one-machine configuration
  (:mod:`lakehub.server.kube.hub`);
- the settings are checked first (:func:`lakehub.server.kube.settings.check`): a lake and a
  database outside the hub's disk, else :class:`KubeError` in one line;
- no secret value is in the output: the settings' secrets, the hub's keys and tokens and the
  users' lake keys are Secrets the operator creates, referenced by name and key;
- two namespaces: the platform's (``namespace``) and the users' (``<namespace>-users``: notebook
  pods, Dask clusters, Spark executors and the users' lake Secrets), so that what users start
  can reference none of the platform's Secrets.

``python -m lakehub.server.kube --out DIR --image IMAGE --registry REGISTRY`` writes the files.
"""

from __future__ import annotations

import json
from typing import Any

from lakehub.server.compute import k8s as dask_k8s
from lakehub.server.config import Settings
from lakehub.server.kube import hub, users, workloads
from lakehub.server.kube.settings import (
    PORTS,
    SECRETS,
    STATE,
    STATE_KEYS,
    KubeError,
    check,
    ingest_ports,
    lakehub_toml,
    runtime_json,
    secret_keys,
)
from lakehub.server.notebooks import k8s as notebooks_k8s
from lakehub.server.notebooks.specs import BUILTIN_ENVIRONMENTS, DEFAULT_SIZES

__all__ = ["KubeError", "render", "file_name"]

KUSTOMIZATION = "kustomization.yaml"
GATEWAY_VALUES = "dask-gateway-values.yaml"
SECRETS_FILE = "secrets.txt"


def file_name(obj: dict[str, Any]) -> str:
    """``<kind>-<name>.yaml``, lowercase."""
    return f"{obj['kind']}-{obj['metadata']['name']}.yaml".lower()


def gateway_values(settings: Settings, namespace: str, users_ns: str, image: str) -> dict[str, Any]:
    """The dask-gateway chart's values: JupyterHub as its authenticator (the token from
    ``lakehub-state``), the gateway under the hub's prefix, clusters in the users' namespace."""
    limits = dask_k8s.Limits(
        max_workers=settings.compute_max_workers,
        max_worker_cores=max(1, int(settings.compute_max_worker_cores)),
        max_worker_memory=settings.compute_max_worker_memory,
        idle_timeout=settings.compute_idle_timeout,
    )
    hub_api = hub.svc("hub", namespace, PORTS["hub"]) + "/hub/api"
    name, _, tag = image.rpartition(":")
    return {
        "gateway": {
            "prefix": hub.GATEWAY_PREFIX,
            "auth": {
                "type": "jupyterhub",
                "jupyterhub": {
                    "apiUrl": hub_api,
                    "apiTokenFromSecretName": STATE,
                    "apiTokenFromSecretKey": "gateway.token",
                },
            },
            "backend": {"image": {"name": name, "tag": tag}},
            "extraConfig": {"lakehub": dask_k8s.render(image, hub_api, users_ns, limits)},
        },
        "traefik": {"service": {"type": "ClusterIP"}},
    }


def secrets_text(settings: Settings, namespace: str, users_ns: str) -> str:
    """The Secrets the manifests reference, by name and key: what to create before applying."""
    lines = [
        "# Secrets the manifests read; create them before `kubectl apply -k`",
        "# (docs/howto/kubernetes.md shows the commands). Names and keys only.",
        f"{namespace}/{SECRETS}: {', '.join(secret_keys(settings))}",
        f"{namespace}/{STATE}: {', '.join(STATE_KEYS)}",
        f"{users_ns}/lakehub-lake-<user> (optional, one per user): AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY",
    ]
    return "\n".join(lines) + "\n"


def render(
    settings: Settings,
    image: str,
    namespace: str = "lakehub",
    registry: str = "",
    public_url: str = "",
    sdk_requirement: str = "lakehub",
) -> dict[str, Any]:
    """Every file of the deployment (see the module's rules); raises :class:`KubeError`."""
    check(settings)
    if not registry:
        raise KubeError("a registry for the notebook environments' images is needed")
    if ":" not in image.rpartition("/")[2]:
        raise KubeError(f"the image {image!r} needs a tag (name:tag)")
    assert settings.lake_endpoint_url  # checked
    users_ns = f"{namespace}-users"
    public_url = public_url or f"http://proxy-public.{namespace}.svc.cluster.local"
    envs = notebooks_k8s.render(BUILTIN_ENVIRONMENTS, DEFAULT_SIZES, registry, sdk_requirement)
    profiles = json.dumps(envs["profile_list"], indent=2) + "\n"
    config = {
        "lakehub.toml": lakehub_toml(settings),
        "runtime.json": runtime_json(settings, public_url),
        "jupyterhub_config.py": hub.jupyterhub_config(
            namespace, users_ns, public_url, settings.lake_endpoint_url
        ),
        hub.PROFILES: profiles,
    }
    forward, http = ingest_ports(settings)
    objects = [
        users.namespace(namespace),
        users.namespace(users_ns, users=True),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": workloads.meta(workloads.CONFIGMAP, namespace, "hub"),
            "data": config,
        },
        *workloads.hub(namespace, image),
        *workloads.proxy(namespace, image),
        *users.spawner_rbac(users_ns, namespace),
        *users.spark(users_ns),
    ]
    if settings.ingest:
        objects += workloads.ingest(
            namespace, image, forward, http, settings.ingest_buffer_max_bytes
        )
    files: dict[str, Any] = {}
    for obj in objects:
        name = file_name(obj)
        if name in files:
            raise AssertionError(f"two objects render to {name}")
        files[name] = obj
    files[KUSTOMIZATION] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    dask_image = envs["images"]["dask"]["tag"]
    files[GATEWAY_VALUES] = gateway_values(settings, namespace, users_ns, dask_image)
    files[SECRETS_FILE] = secrets_text(settings, namespace, users_ns)
    files[f"images/{hub.PROFILES}"] = profiles
    for env, built in envs["images"].items():
        files[f"images/{env}/Dockerfile"] = built["dockerfile"]
    return files
