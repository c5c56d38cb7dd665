"""What a notebook server is made of: an environment spec and a size. Plain data, no I/O.

The same two shapes drive the one-machine spawner (uv virtual environments, cgroups) and the
Kubernetes mapping (container images, KubeSpawner profiles).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]")
_PYTHON = re.compile(r"3\.\d{1,2}")
# a requirement as pip reads it, without URLs, paths or options (nothing that reaches the network
# or the file system on its own)
_REQUIREMENT = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?"
    r"\s*((==|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!_-]+\s*,?\s*)*"
)


class SpecError(ValueError):
    pass


def valid_env_name(name: str) -> str:
    if not _NAME.fullmatch(name or ""):
        raise SpecError(
            f"invalid environment name {name!r}: 2-32 of a-z, 0-9 and '-', starting with a letter"
        )
    return name


@dataclass(frozen=True)
class EnvironmentSpec:
    """A named environment: a Python version and the packages on top of the kernel and SDK."""

    name: str
    description: str
    python: str  # "3.11"
    packages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        valid_env_name(self.name)
        if not _PYTHON.fullmatch(self.python):
            raise SpecError(f"invalid Python version {self.python!r}: use a version like 3.11")
        for req in self.packages:
            if not _REQUIREMENT.fullmatch(req):
                raise SpecError(
                    f"invalid package {req!r}: use a name with optional version "
                    "constraints, like 'pandas>=2.2'"
                )


@dataclass(frozen=True)
class Size:
    """CPU (cores, may be fractional) and memory (bytes) a server may use, kernels included."""

    name: str
    cpus: float
    memory: int
    description: str = field(default="")

    def __post_init__(self) -> None:
        valid_env_name(self.name)
        if not 0 < self.cpus <= 1024:
            raise SpecError(f"size {self.name!r}: cpus must be above 0")
        if self.memory < 256 * 2**20:
            raise SpecError(
                f"size {self.name!r}: memory must be at least 256 MiB "
                "(a server and one kernel use about 150 MiB)"
            )


# MLflow's client, for LakeHub's tracking server (the version its API is tested against)
MLFLOW_CLIENT = "mlflow-skinny==3.17.2"
# every environment also gets ipykernel, pip, papermill (notebook jobs run in any environment)
# and the LakeHub SDK (boto3, httpx)
KERNEL_PACKAGES = ("ipykernel", "pip", "papermill")

BUILTIN_ENVIRONMENTS = (
    EnvironmentSpec(
        "datascience",
        "pandas, polars, pyarrow, scikit-learn, DuckDB, matplotlib, "
        "s3fs, Zarr, MLflow's client and VADER (the AI library's sentiment model): the "
        "everyday data stack",
        "3.11",
        (
            "pandas",
            "polars",
            "pyarrow",
            "scikit-learn",
            "duckdb",
            "matplotlib",
            "s3fs==2026.9.0",
            "zarr>=3.0",
            MLFLOW_CLIENT,
            "vaderSentiment==3.3.2",
        ),
    ),
    EnvironmentSpec("minimal", "Python, a kernel and the LakeHub SDK only", "3.11"),
    EnvironmentSpec(
        "dask",
        "Dask, distributed and the dask-gateway client, with the dashboard (bokeh), "
        "pandas, pyarrow, scikit-learn, Zarr and MLflow's client",
        "3.11",
        (
            # the versions the hub's gateway runs: client, scheduler and workers must match
            # (unpinned, dask 2026.11.0 came with no distributed of its own and the resolver
            # paired it with distributed 2021.4.1)
            "dask[dataframe]==2026.8.0",
            "distributed==2026.8.0",
            "dask-gateway==2026.3.0",
            "bokeh>=3.1",  # the dashboard
            "pyarrow",
            "scikit-learn",
            "s3fs==2026.9.0",
            "zarr>=3.0",
            MLFLOW_CLIENT,
        ),
    ),
    EnvironmentSpec(
        "spark",
        "PySpark (Java is on the machine) with s3a for the lake and Spark Connect, pandas and "
        "pyarrow; a Spark cluster of your own starts with the server",
        "3.11",
        (
            "pyspark>=4",
            "pandas",
            "pyarrow",
            "sagemaker_pyspark==1.4.5",
            # Spark Connect's client: a session with no JVM in the notebook
            "grpcio-status>=1.76",
            "googleapis-common-protos>=1.71",
            "zstandard>=0.25",
        ),
    ),
)

# Packages installed for the jars they carry: their own pin of pyspark is overridden by the
# spec's (see overrides below)
JAR_CARRIERS = {"sagemaker-pyspark": "pyspark"}
# environments whose servers get a cluster of their own, started and stopped with the server
CLUSTER_ENVIRONMENTS = {"spark": "spark"}


def overrides(packages: tuple[str, ...]) -> list[str]:
    """For packages installed only for the jars they carry (``JAR_CARRIERS``): the spec's own
    requirement of what they pin, which replaces their pin (``uv pip install --override``)."""
    names = {
        re.split(r"[\[=<>!~ ]", p, maxsplit=1)[0].lower().replace("_", "-"): p for p in packages
    }
    return [
        names.get(pinned, pinned) for carrier, pinned in JAR_CARRIERS.items() if carrier in names
    ]


DEFAULT_SIZES = (
    Size("small", 1, 2 * 2**30, "1 CPU, 2 GiB"),
    Size("medium", 2, 4 * 2**30, "2 CPUs, 4 GiB"),
    Size("large", 4, 8 * 2**30, "4 CPUs, 8 GiB"),
)
