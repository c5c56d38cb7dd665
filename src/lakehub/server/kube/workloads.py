"""The platform's workloads in its namespace: proxy, hub (JupyterHub and the control plane),
ingestion; each a Deployment with its Services, as plain data.

Rules:

- each container runs the command ``lakehub up`` runs for its component (``up.components``),
  listening on every address of its pod at a fixed port, with the settings from the ConfigMap
  ``lakehub-config`` (``LAKEHUB_CONFIG``) and the secret ones from ``lakehub-secrets``;
- JupyterHub and the control plane share one pod (two containers): the control plane reaches
  JupyterHub's REST API at 127.0.0.1 (``Runtime.hub_api_url``) and JupyterHub's server API
  checks reach the control plane there too, as on one machine; a pod's containers share one
  network, two Deployments would not. Both hold state that exists once (JupyterHub's database,
  the control plane's loops), so one replica, replaced with ``Recreate``;
- the hub pod's init containers make the data directory's folders and then migrate the metadata
  and give the lake its identities (what ``lakehub up`` does before it starts the components);
- every pod runs as a non-root user with no privilege escalation, no capabilities and the
  runtime's seccomp profile; every container has requests, limits and a readiness probe on the
  health URL it already serves; only the hub's pod gets a service account token (KubeSpawner).
"""

from __future__ import annotations

from typing import Any

from lakehub.server.kube.settings import (
    CONFIG_DIR,
    DATA_DIR,
    PORTS,
    SECRETS,
    STATE,
    STATE_KEYS,
)

UID = 10001  # the platform image's user (any non-root uid; the images' files are world-readable)
CONFIGMAP = "lakehub-config"
HUB_ACCOUNT = "hub"
PART_OF = "lakehub"

# (requests, limits) per container
RESOURCES = {
    "proxy": (("100m", "128Mi"), ("1", "512Mi")),
    "hub": (("250m", "512Mi"), ("1", "1Gi")),
    "api": (("500m", "1Gi"), ("2", "2Gi")),
    "ingest": (("500m", "512Mi"), ("2", "2Gi")),
    "init": (("100m", "256Mi"), ("1", "1Gi")),
}

PREPARE = (
    "from lakehub.server.config import load_settings;"
    "from lakehub.server.db import Database, upgrade;"
    "from lakehub.server.identity.users import Directory;"
    "from lakehub.server.lake import open_lake;"
    "from lakehub.server.runtime import load_runtime, tokens;"
    "from lakehub.server.vault import Vault;"
    "s = load_settings(); upgrade(s.database_url);"
    "Directory(Database(s.database_url), Vault(s.state_dir),"
    " open_lake(s, load_runtime(s), tokens(s))).prepare_lake()"
)


def labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": PART_OF}


def meta(name: str, namespace: str | None, component: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "labels": labels(component)}
    if namespace:
        out["namespace"] = namespace
    return out


def resources(kind: str) -> dict[str, Any]:
    (cpu, mem), (cpu_max, mem_max) = RESOURCES[kind]
    return {"requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": cpu_max, "memory": mem_max}}


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
    }


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def ready(path: str, port: str) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": 5,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }


def service(
    name: str, namespace: str, component: str, ports: list[tuple[str, int, str]], **spec: Any
) -> dict[str, Any]:
    """A Service selecting ``component``'s pods; ``ports``: (name, port, targetPort name)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, namespace, component),
        "spec": {
            "selector": labels(component),
            "ports": [
                {"name": n, "port": p, "targetPort": t, "protocol": "TCP"} for n, p, t in ports
            ],
            **spec,
        },
    }


def pvc(name: str, namespace: str, component: str, size: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(name, namespace, component),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def deployment(
    namespace: str, component: str, pod: dict[str, Any], recreate: bool = False
) -> dict[str, Any]:
    strategy = {"type": "Recreate"} if recreate else {"type": "RollingUpdate"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(component, namespace, component),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels(component)},
            "strategy": strategy,
            "template": {"metadata": {"labels": labels(component)}, "spec": pod},
        },
    }


def lakehub_container(name: str, image: str, args: list[str], kind: str) -> dict[str, Any]:
    """A container running LakeHub's code with its settings (the file, then the Secret)."""
    return {
        "name": name,
        "image": image,
        "args": args,
        "env": [
            {"name": "LAKEHUB_DATA_DIR", "value": DATA_DIR},
            {"name": "LAKEHUB_CONFIG", "value": f"{CONFIG_DIR}/lakehub.toml"},
        ],
        "envFrom": [{"secretRef": {"name": SECRETS}}],
        "volumeMounts": state_mounts(),
        "resources": resources(kind),
        "securityContext": container_security(),
    }


def state_mounts() -> list[dict[str, Any]]:
    """The settings file, ``run/runtime.json`` and each key of ``lakehub-state`` as the file
    ``DATA_DIR/state/<key>`` (single files: the folders stay writable)."""
    return [
        {"name": "config", "mountPath": f"{CONFIG_DIR}/lakehub.toml", "subPath": "lakehub.toml"},
        {
            "name": "config",
            "mountPath": f"{DATA_DIR}/run/runtime.json",
            "subPath": "runtime.json",
        },
        *(
            {"name": "state", "mountPath": f"{DATA_DIR}/state/{key}", "subPath": key}
            for key in STATE_KEYS
        ),
    ]


def state_volumes(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": "data", **data},
        {"name": "config", "configMap": {"name": CONFIGMAP}},
        {"name": "state", "secret": {"secretName": STATE, "defaultMode": 0o440}},
    ]


def hub(namespace: str, image: str) -> list[dict[str, Any]]:
    """JupyterHub and the control plane in one pod, their data on a volume, three Services."""
    data_mount = {"name": "data", "mountPath": DATA_DIR}
    hub_c = lakehub_container(
        "hub", image, ["jupyterhub", "-f", f"{CONFIG_DIR}/jupyterhub_config.py"], "hub"
    )
    hub_c["workingDir"] = f"{DATA_DIR}/state"  # as on one machine: JupyterHub's files there
    hub_c["volumeMounts"] = [
        data_mount,
        *hub_c["volumeMounts"],
        *(
            {"name": "config", "mountPath": f"{CONFIG_DIR}/{key}", "subPath": key}
            for key in ("jupyterhub_config.py", "kubespawner_profiles.json")
        ),
    ]
    hub_c["ports"] = [{"name": "hub", "containerPort": PORTS["hub"], "protocol": "TCP"}]
    hub_c["readinessProbe"] = ready("/hub/health", "hub")
    api_args = ["python", "-m", "uvicorn", "--factory", "lakehub.server.web.app:create_app"]
    api_args += ["--host", "0.0.0.0", "--port", str(PORTS["api"]), "--no-access-log"]
    api_c = lakehub_container("api", image, api_args, "api")
    api_c["volumeMounts"] = [data_mount, *api_c["volumeMounts"]]
    api_c["ports"] = [{"name": "api", "containerPort": PORTS["api"], "protocol": "TCP"}]
    api_c["readinessProbe"] = ready("/services/lakehub/api/health", "api")
    folders = ", ".join(repr(f"{DATA_DIR}/{d}") for d in ("state", "run", "logs", "ingest"))
    dirs = {
        "name": "folders",
        "image": image,
        "command": [
            "python",
            "-c",
            f"import os\nfor d in ({folders}): os.makedirs(d, 0o700, True)",
        ],
        "volumeMounts": [data_mount],
        "resources": resources("init"),
        "securityContext": container_security(),
    }
    prepare = lakehub_container("prepare", image, ["python", "-c", PREPARE], "init")
    prepare["volumeMounts"] = [data_mount, *prepare["volumeMounts"]]
    pod = {
        "serviceAccountName": HUB_ACCOUNT,
        "automountServiceAccountToken": True,
        "securityContext": pod_security(),
        "initContainers": [dirs, prepare],
        "containers": [hub_c, api_c],
        "volumes": state_volumes({"persistentVolumeClaim": {"claimName": "hub-data"}}),
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(HUB_ACCOUNT, namespace, "hub"),
        },
        pvc("hub-data", namespace, "hub", "1Gi"),
        deployment(namespace, "hub", pod, recreate=True),
        service("hub", namespace, "hub", [("hub", PORTS["hub"], "hub")]),
        service("api", namespace, "hub", [("api", PORTS["api"], "api")]),
    ]


def proxy(namespace: str, image: str) -> list[dict[str, Any]]:
    """configurable-http-proxy: the front door (``proxy-public``) and its API (``proxy-api``)."""
    hub_url = f"http://hub.{namespace}.svc.cluster.local:{PORTS['hub']}"
    args = ["configurable-http-proxy", "--ip", "0.0.0.0", "--port", str(PORTS["proxy"])]
    args += ["--api-ip", "0.0.0.0", "--api-port", str(PORTS["proxy_api"])]
    args += ["--default-target", hub_url, "--error-target", f"{hub_url}/hub/error"]
    token = {"secretKeyRef": {"name": STATE, "key": "proxy.token"}}
    container = {
        "name": "proxy",
        "image": image,
        "args": args,
        "env": [{"name": "CONFIGPROXY_AUTH_TOKEN", "valueFrom": token}],
        "ports": [
            {"name": "http", "containerPort": PORTS["proxy"], "protocol": "TCP"},
            {"name": "api", "containerPort": PORTS["proxy_api"], "protocol": "TCP"},
        ],
        "readinessProbe": ready("/_chp_healthz", "http"),
        "resources": resources("proxy"),
        "securityContext": container_security(),
    }
    pod = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security(),
        "containers": [container],
    }
    return [
        deployment(namespace, "proxy", pod, recreate=True),
        service("proxy-public", namespace, "proxy", [("http", 80, "http")], type="LoadBalancer"),
        service("proxy-api", namespace, "proxy", [("api", PORTS["proxy_api"], "api")]),
    ]


def ingest(
    namespace: str, image: str, forward: int, http: int, buffer: int
) -> list[dict[str, Any]]:
    """The Forward and HTTP receivers; their durable log on a volume a quarter larger than the
    bound it may hold (``ingest_buffer_max_bytes``)."""
    size = f"{max(1, -(-buffer * 5 // 4 // 2**30))}Gi"
    container = lakehub_container(
        "ingest", image, ["python", "-m", "lakehub.server.ingest"], "ingest"
    )
    container["volumeMounts"] = [
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "log", "mountPath": f"{DATA_DIR}/ingest"},
        *container["volumeMounts"],
    ]
    container["ports"] = [
        {"name": "forward", "containerPort": forward, "protocol": "TCP"},
        {"name": "http", "containerPort": http, "protocol": "TCP"},
    ]
    container["readinessProbe"] = ready("/health", "http")
    pod = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security(),
        "terminationGracePeriodSeconds": 60,  # the log finishes what it was given
        "containers": [container],
        "volumes": [
            *state_volumes({"emptyDir": {}}),
            {"name": "log", "persistentVolumeClaim": {"claimName": "ingest-log"}},
        ],
    }
    return [
        pvc("ingest-log", namespace, "ingest", size),
        deployment(namespace, "ingest", pod, recreate=True),
        service(
            "ingest",
            namespace,
            "ingest",
            [("forward", forward, "forward"), ("http", http, "http")],
            type="LoadBalancer",
        ),
    ]
