"""An endpoint on Kubernetes: one KServe ``InferenceService`` (``serving.kserve.io/v1beta1``) per
endpoint, rendered as plain data (no I/O; apply it with any Kubernetes client).

What maps to what:

- the endpoint's name is ``metadata.name``: KServe's own rule, a DNS-1035 label (a lowercase
  letter first, then ``a-z0-9-``), at most 53 characters so that ``<name>-predictor`` (the
  Service KServe makes) stays a 63-character label. The host name KServe derives also holds the
  namespace (``<name>-predictor-<namespace>`` under the default domain template): a pair too
  long for one label fails in KServe's controller, not here. Labels say who manages it, whose
  it is, and the model and version (label-safe: other characters become ``-``, cut to 63);
  the raw model and owner names are in annotations.
- its replicas are ``minReplicas`` = ``maxReplicas``; its size is the model container's
  ``resources``, requests = limits (CPU in millicores, memory in whole MiB, rounded down).
- the version's files are ``model.storageUri`` (``s3://bucket/prefix/``; a ``/`` is added so
  that version 1 never picks up version 10's files), read by KServe's storage initializer with
  the S3 keys of ``serviceAccountName``'s Secret (whose ``serving.kserve.io/s3-endpoint``
  annotation names the lake), as KServe documents for S3 storage.
- the model is served by the runtime KServe picks for ``modelFormat`` ``mlflow`` and protocol
  ``v2`` (MLServer, the Open Inference Protocol v2 as LakeHub's replicas answer it). ``image``
  is ``model.image``: KServe merges the model container over the runtime's, so the image
  replaces the runtime's but keeps its command; it must carry MLServer and mlserver-mlflow
  besides the model's packages (a LakeHub environment with those two added).
- a canary is ``canaryTrafficPercent``: KServe sends that share to the revision this manifest
  makes and the rest to the last one fully rolled out. So with ``canary_share`` > 0, ``version``
  and ``storage_uri`` are the canary's, applied over a manifest of the main version rendered
  without it; promoting is applying it again without the share. Canaries need KServe's Knative
  (serverless) deployment mode, which is left to the cluster's default.

Not rendered: LakeHub's gateway (who may call an endpoint, application tokens, the replicas'
key, retrying another replica) is replaced by the cluster's ingress and its authentication;
the warm-up request from the model's input example (KServe's readiness is MLServer's: the model
loaded); ``batching`` (MLServer batches adaptively by its own settings, e.g. its
``MLSERVER_MODEL_MAX_BATCH_SIZE``, left to the runtime); the endpoint's environment, unless
given as ``image``.
"""

from __future__ import annotations

import re
from typing import Any

NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # KServe's webhook rule
NAME_MAX = 63 - len("-predictor")
NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # a DNS-1123 label
LABEL_MAX = 63


def label_value(text: str) -> str:
    """``text`` as a label value: characters other than ``A-Za-z0-9-_.`` become ``-``, cut to
    63 characters, starting and ending with a letter or digit (maybe empty)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:LABEL_MAX].strip("-_.")


def cpu_quantity(cpus: float) -> str:
    milli = round(cpus * 1000)
    if milli < 1:
        raise ValueError(f"cpus must be at least 0.001, not {cpus!r}")
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def inference_service(
    *,
    name: str,
    namespace: str,
    owner: str,
    model: str,
    version: int,
    storage_uri: str,
    replicas: int,
    cpus: float,
    memory: int,
    canary_share: int = 0,
    service_account: str | None = None,
    image: str | None = None,
) -> dict[str, Any]:
    """The ``InferenceService`` serving ``model``'s ``version`` as the endpoint ``name``."""
    if len(name) > NAME_MAX or not NAME.fullmatch(name):
        raise ValueError(
            f"endpoint name {name!r} cannot name an InferenceService: it needs 1 to {NAME_MAX} "
            "lowercase letters, digits and '-', a letter first and no '-' last"
        )
    if len(namespace) > 63 or not NAMESPACE.fullmatch(namespace):
        raise ValueError(f"namespace {namespace!r} is not a DNS-1123 label")
    if not storage_uri.startswith("s3://") or len(storage_uri) <= len("s3://"):
        raise ValueError(f"storage_uri {storage_uri!r} is not an s3://bucket/prefix/ address")
    if replicas < 1:
        raise ValueError(f"an endpoint needs at least one replica, not {replicas}")
    if memory < 2**20:
        raise ValueError(f"memory is in bytes and at least 1 MiB, not {memory}")
    if not 0 <= canary_share <= 100:
        raise ValueError(f"canary_share is a percentage, not {canary_share}")
    size = {"cpu": cpu_quantity(cpus), "memory": f"{memory >> 20}Mi"}
    spec: dict[str, Any] = {
        "modelFormat": {"name": "mlflow"},
        "protocolVersion": "v2",
        "storageUri": storage_uri if storage_uri.endswith("/") else storage_uri + "/",
        "resources": {"requests": dict(size), "limits": dict(size)},
    }
    if image:
        spec["image"] = image
    predictor: dict[str, Any] = {"minReplicas": replicas, "maxReplicas": replicas, "model": spec}
    if canary_share > 0:
        predictor["canaryTrafficPercent"] = canary_share
    if service_account:
        predictor["serviceAccountName"] = service_account
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "lakehub",
                "lakehub.io/owner": label_value(owner),
                "lakehub.io/model": label_value(model),
                "lakehub.io/version": str(version),
            },
            "annotations": {"lakehub.io/model": model, "lakehub.io/owner": owner},
        },
        "spec": {"predictor": predictor},
    }


def for_endpoint(
    owner: str,
    name: str,
    model: str,
    storage_uri: str,
    version: int,
    replicas: int,
    size: tuple[float, int],
    namespace: str,
) -> dict[str, Any]:
    """A LakeHub endpoint's ``InferenceService``: named ``<owner>-<name>`` as KServe's rule
    allows (``ep-`` in front of a digit, cut to 53), read with the service account
    ``lakehub-lake``."""
    k8s_name = re.sub(r"[^a-z0-9-]+", "-", f"{owner}-{name}".lower())
    if not k8s_name[:1].isalpha():
        k8s_name = "ep-" + k8s_name
    return inference_service(
        name=k8s_name[:53].rstrip("-"),
        namespace=namespace,
        owner=owner,
        model=model,
        version=version,
        storage_uri=storage_uri,
        replicas=replicas,
        cpus=size[0],
        memory=size[1],
        service_account="lakehub-lake",
    )
