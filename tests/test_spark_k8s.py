"""Spark on Kubernetes, the production route: the rendered settings and executor pod template."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pyspark

from lakehub.server.compute.spark_k8s import lake_secret_name, pod_template, submit_conf


def _spark_kubernetes_keys() -> str:
    """The setting names Spark's Kubernetes backend defines, from its own jar."""
    (jar,) = (Path(pyspark.__file__).parent / "jars").glob("spark-kubernetes_*.jar")
    with zipfile.ZipFile(jar) as z:
        return z.read("org/apache/spark/deploy/k8s/Config$.class").decode("latin-1")


def test_a_users_settings_are_spark_settings_and_carry_no_secret() -> None:
    conf = submit_conf(
        "alice",
        "registry.example.org/lakehub-env-spark:abc",
        workers=3,
        cores=1.5,
        memory_mb=4096,
        lake_endpoint="http://lake:8333",
        driver_host="jupyter-alice.lakehub.svc",
    )
    assert conf["spark.master"] == "k8s://https://kubernetes.default.svc"
    assert conf["spark.executor.instances"] == "3"
    assert (conf["spark.executor.cores"], conf["spark.kubernetes.executor.request.cores"]) == (
        "2",
        "1.5",
    )
    # heap plus overhead is the worker's memory
    heap, overhead = (
        int(conf[k].rstrip("m")) for k in ("spark.executor.memory", "spark.executor.memoryOverhead")
    )
    assert heap + overhead == 4096
    assert conf["spark.kubernetes.executor.secretKeyRef.AWS_SECRET_ACCESS_KEY"] == (
        f"{lake_secret_name('alice')}:AWS_SECRET_ACCESS_KEY"
    )
    assert not any(k.endswith((".secret", "secret.key", "access.key")) for k in conf)
    # every Kubernetes setting is one Spark's backend knows (prefixes for the per-key ones)
    known = _spark_kubernetes_keys()
    for key in conf:
        if key.startswith("spark.kubernetes."):
            stem = re.sub(r"(secretKeyRef|label)\..*", r"\1.", key)
            assert stem in known, key


def test_the_executor_pod_template_runs_as_the_user_without_privileges() -> None:
    pod = pod_template("alice")
    assert pod["metadata"]["labels"]["lakehub/owner"] == "alice"
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == 1000
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_the_command_line_renders_both() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehub.server.compute.spark_k8s",
            "bob",
            "--image",
            "img:1",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out)
    assert data["conf"]["spark.kubernetes.container.image"] == "img:1"
    assert data["pod_template"]["metadata"]["labels"]["lakehub/owner"] == "bob"
