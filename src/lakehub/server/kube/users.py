"""The users' namespace: notebook pods (KubeSpawner), Dask clusters (the gateway chart) and
Spark executors, kept apart from the platform's namespace and its Secrets.

Rules:

- the hub's service account may manage pods, their home volumes and read events there, nothing
  more (what KubeSpawner calls);
- a notebook's Spark driver (client mode) holds the service account ``lakehub-spark-driver``,
  which may create, watch and delete pods and ConfigMaps there (what Spark's Kubernetes
  backend calls), nothing else: no Secrets, no volumes claims, no ``exec``;
- creating a pod lets its creator read any Secret of the namespace by reference, so an
  admission policy holds every pod that account creates or deletes to its owner: the pod's
  ``lakehub/owner`` label must name the notebook pod asking (bound service account tokens
  carry the pod's name; KubeSpawner names pods ``jupyter-<user>[--<server>]``), a new pod may
  reference no Secret but ``lakehub-lake-<owner>``, mount only ConfigMaps and empty folders and
  carry no service account token; the account deletes only ConfigMaps named ``spark-*``;
- the executors' pod template is :func:`lakehub.server.compute.spark_k8s.pod_template`, shared
  by every user (the owner's label is set per session by ``submit_conf``);
- the namespace enforces Pod Security's ``baseline`` and warns of ``restricted``.
"""

from __future__ import annotations

import json
from typing import Any

from lakehub.server.compute.spark_k8s import lake_secret_name, pod_template
from lakehub.server.kube.hub import SPARK_CONFIGMAP, SPARK_DRIVER, SPARK_TEMPLATE_KEY
from lakehub.server.kube.workloads import HUB_ACCOUNT, meta

RBAC = "rbac.authorization.k8s.io/v1"
ADMISSION = "admissionregistration.k8s.io/v1"
POLICY = "lakehub-spark-driver"


def namespace(name: str, users: bool = False) -> dict[str, Any]:
    labels = meta(name, None, "users" if users else "platform")["labels"]
    if users:
        labels |= {
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
        }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _role(name: str, ns: str, rules: list[tuple[list[str], list[str]]]) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": "Role",
        "metadata": meta(name, ns, "users"),
        "rules": [{"apiGroups": [""], "resources": r, "verbs": v} for r, v in rules],
    }


def _binding(name: str, ns: str, account: str, account_ns: str) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": "RoleBinding",
        "metadata": meta(name, ns, "users"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": account_ns}],
    }


def spawner_rbac(users: str, platform: str) -> list[dict[str, Any]]:
    manage = ["get", "list", "watch", "create", "delete"]
    rules = [(["pods", "persistentvolumeclaims"], manage), (["events"], ["get", "list", "watch"])]
    return [
        _role("lakehub-spawner", users, rules),
        _binding("lakehub-spawner", users, HUB_ACCOUNT, platform),
    ]


def executor_template() -> dict[str, Any]:
    """The executors' pod template, without an owner: ``submit_conf`` labels each session's."""
    template = pod_template("")
    del template["metadata"]["labels"]["lakehub/owner"]
    return template


def _admission_policy(users: str) -> list[dict[str, Any]]:
    pod_name = "authentication.kubernetes.io/pod-name"
    lake = lake_secret_name("")
    secret_refs = (
        "variables.pod.spec.containers.all(c,"
        " (!has(c.env) || c.env.all(e, !has(e.valueFrom) || !has(e.valueFrom.secretKeyRef)"
        " || e.valueFrom.secretKeyRef.name == variables.lake))"
        " && (!has(c.envFrom) || c.envFrom.all(f, !has(f.secretRef)"
        " || f.secretRef.name == variables.lake)))"
    )
    policy = {
        "apiVersion": ADMISSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": meta(POLICY, None, "users"),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": users}},
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "DELETE"],
                        "resources": ["pods", "configmaps"],
                    }
                ],
            },
            "matchConditions": [
                {
                    "name": "spark-driver",
                    "expression": "request.userInfo.username == "
                    f"'system:serviceaccount:{users}:{SPARK_DRIVER}'",
                }
            ],
            "variables": [
                {
                    "name": "pod",
                    "expression": "request.operation == 'DELETE' ? oldObject : object",
                },
                {
                    "name": "asker",
                    "expression": "has(request.userInfo.extra)"
                    f" && '{pod_name}' in request.userInfo.extra"
                    f" ? request.userInfo.extra['{pod_name}'][0] : ''",
                },
                {
                    "name": "owner",
                    "expression": "has(variables.pod.metadata.labels)"
                    " && 'lakehub/owner' in variables.pod.metadata.labels"
                    " ? variables.pod.metadata.labels['lakehub/owner'] : ''",
                },
                {"name": "lake", "expression": f"'{lake}' + variables.owner"},
            ],
            "validations": [
                {
                    "expression": "request.resource.resource != 'configmaps'"
                    " || (has(variables.pod.metadata.name)"
                    " && variables.pod.metadata.name.startsWith('spark-'))",
                    "message": "a notebook may change only Spark's own ConfigMaps (spark-*)",
                },
                {
                    "expression": "request.resource.resource != 'pods' || (variables.owner != ''"
                    " && (variables.asker == 'jupyter-' + variables.owner"
                    " || variables.asker.startsWith('jupyter-' + variables.owner + '--')))",
                    "message": "a notebook may create and delete only its owner's pods "
                    "(label lakehub/owner)",
                },
                {
                    "expression": "request.resource.resource != 'pods'"
                    " || request.operation == 'DELETE' || ("
                    "has(variables.pod.spec.automountServiceAccountToken)"
                    " && !variables.pod.spec.automountServiceAccountToken"
                    " && !has(variables.pod.spec.initContainers)"
                    " && (!has(variables.pod.spec.volumes) || variables.pod.spec.volumes.all(v,"
                    " has(v.configMap) || has(v.emptyDir)))"
                    f" && {secret_refs})",
                    "message": "an executor pod may read only its owner's lake Secret, mount "
                    "only ConfigMaps and empty folders, and carry no service account token",
                },
            ],
        },
    }
    binding = {
        "apiVersion": ADMISSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": meta(POLICY, None, "users"),
        "spec": {"policyName": POLICY, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def spark(users: str) -> list[dict[str, Any]]:
    """The executors' template and what lets a notebook's driver start them, held to its owner."""
    manage = ["get", "list", "watch", "create", "delete", "deletecollection"]
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(SPARK_CONFIGMAP, users, "spark"),
            "data": {SPARK_TEMPLATE_KEY: json.dumps(executor_template(), indent=2) + "\n"},
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(SPARK_DRIVER, users, "spark"),
        },
        _role(SPARK_DRIVER, users, [(["pods", "configmaps"], manage)]),
        _binding(SPARK_DRIVER, users, SPARK_DRIVER, users),
        *_admission_policy(users),
    ]
