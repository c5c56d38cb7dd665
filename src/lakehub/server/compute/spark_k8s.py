"""Spark on Kubernetes, the production route: a user's executors as pods, the driver in the
notebook's pod (client mode). Plain data, no I/O: what ``spark-submit --master k8s://...`` (or
``SparkSession.builder``) takes, and the executors' pod template.

``python -m lakehub.server.compute.spark_k8s alice --image registry/lakehub-env-spark:TAG`` prints
both as JSON. See docs/howto/spark.md.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from typing import Any

from lakehub.compute.spark_session import LAKE_JARS, S3A_NUMBERS

JARS_DIR = "/opt/env/lib/python3.11/site-packages/sagemaker_pyspark/jars"  # in the env image
TEMPLATE_PATH = "/etc/lakehub/spark-executor-template.json"


def lake_secret_name(user: str) -> str:
    """The Kubernetes Secret that holds a user's lake keys (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, as for their notebook pod and Dask clusters); Spark reads it
    into the executors."""
    return f"lakehub-lake-{user}"


def submit_conf(
    user: str,
    image: str,
    *,
    namespace: str = "lakehub",
    api_server: str = "https://kubernetes.default.svc",
    workers: int = 2,
    cores: float = 1,
    memory_mb: int = 2048,
    lake_endpoint: str = "",
    driver_host: str = "",
    service_account: str = "",
) -> dict[str, str]:
    """The settings of one user's session. No secret is in them: Spark on Kubernetes makes the
    session's own authentication secret, and the lake keys come from the user's Secret."""
    if workers < 1 or cores <= 0 or memory_mb < 512:
        raise ValueError("a Spark session needs at least one executor, some cores and 512 MiB")
    secret = lake_secret_name(user)
    jars = ":".join(f"{JARS_DIR}/{j}" for j in LAKE_JARS)
    s3a = "org.apache.hadoop.fs.s3a.S3AFileSystem"
    conf = {
        "spark.master": f"k8s://{api_server}",
        "spark.submit.deployMode": "client",
        "spark.kubernetes.namespace": namespace,
        "spark.kubernetes.container.image": image,
        "spark.kubernetes.executor.podTemplateFile": TEMPLATE_PATH,
        "spark.kubernetes.executor.podNamePrefix": f"spark-{user}",
        "spark.kubernetes.executor.label.lakehub/owner": user,
        "spark.executor.instances": str(workers),
        "spark.executor.cores": str(max(1, math.ceil(cores))),
        "spark.kubernetes.executor.request.cores": f"{cores:g}",
        "spark.kubernetes.executor.limit.cores": f"{cores:g}",
        "spark.executor.memory": f"{int(memory_mb * 0.8)}m",
        "spark.executor.memoryOverhead": f"{memory_mb - int(memory_mb * 0.8)}m",
        "spark.authenticate": "true",
        "spark.network.crypto.enabled": "true",
        "spark.driver.extraClassPath": jars,
        "spark.executor.extraClassPath": jars,
        "spark.pyspark.python": "/opt/env/bin/python",
        # the executors' lake keys, from the user's Secret (the driver's come from its own env)
        "spark.kubernetes.executor.secretKeyRef.AWS_ACCESS_KEY_ID": f"{secret}:AWS_ACCESS_KEY_ID",
        "spark.kubernetes.executor.secretKeyRef.AWS_SECRET_ACCESS_KEY": (
            f"{secret}:AWS_SECRET_ACCESS_KEY"
        ),
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "com.amazonaws.auth.EnvironmentVariableCredentialsProvider"
        ),
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.impl": s3a,
        "spark.hadoop.fs.s3.impl": s3a,
        "spark.hadoop.fs.s3a.impl.disable.cache": "true",
        **{f"spark.hadoop.{k}": v for k, v in S3A_NUMBERS.items()},
    }
    if lake_endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = lake_endpoint
    if driver_host:  # the notebook pod's address (a headless service), reached by executors
        conf["spark.driver.host"] = driver_host
        conf["spark.driver.bindAddress"] = "0.0.0.0"
    if service_account:
        conf["spark.kubernetes.authenticate.driver.serviceAccountName"] = service_account
    return conf


def pod_template(user: str, uid: int = 1000, gid: int = 100) -> dict[str, Any]:
    """The executors' pod: non-root as the notebook image's user, no service account token,
    labelled with its owner (for network policies and quotas)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": {"lakehub/owner": user, "lakehub/component": "spark-executor"}},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsUser": uid,
                "runAsGroup": gid,
                "fsGroup": gid,
                "runAsNonRoot": True,
            },
            "containers": [
                {
                    "name": "spark-kubernetes-executor",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def spark_submit_argv(conf: dict[str, str], app: str) -> list[str]:
    """``spark-submit`` with these settings (each as ``--conf k=v``), running ``app``."""
    argv = ["spark-submit"]
    for key, value in sorted(conf.items()):
        argv += ["--conf", f"{key}={value}"]
    return [*argv, app]


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m lakehub.server.compute.spark_k8s",
        description="Render a user's Spark-on-Kubernetes settings",
    )
    p.add_argument("user")
    p.add_argument("--image", required=True, help="the spark environment's image")
    p.add_argument("--namespace", default="lakehub")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cores", type=float, default=1)
    p.add_argument("--memory-mb", type=int, default=2048)
    p.add_argument("--lake-endpoint", default="")
    args = p.parse_args(argv)
    conf = submit_conf(
        args.user,
        args.image,
        namespace=args.namespace,
        workers=args.workers,
        cores=args.cores,
        memory_mb=args.memory_mb,
        lake_endpoint=args.lake_endpoint,
    )
    print(json.dumps({"conf": conf, "pod_template": pod_template(args.user)}, indent=1))


if __name__ == "__main__":
    main()
