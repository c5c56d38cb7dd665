"""Notebook environments and sizes on Kubernetes: one image per environment, KubeSpawner profiles.

The one-machine hub builds each :class:`EnvironmentSpec` into a uv virtual environment and caps a
server at a :class:`Size`. For a Kubernetes hub the same specs become container images (built
and pushed with the cluster's own tools; nothing here runs Docker) and a KubeSpawner
``profile_list`` where the environment is the profile and the size is its ``size`` option::

    python -m lakehub.server.notebooks.k8s --registry registry.example.org/lakehub --out k8s/

writes ``k8s/<environment>/Dockerfile`` and ``k8s/kubespawner_profiles.json``. Everything is a
pure function of the specs, so the same specs always render the same text and the same tags.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import re
import shlex
import shutil
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

from lakehub.server.notebooks.specs import (
    BUILTIN_ENVIRONMENTS,
    DEFAULT_SIZES,
    KERNEL_PACKAGES,
    EnvironmentSpec,
    Size,
    overrides,
)

# what serves a notebook in the pod: the hub's own major version, as on one machine
# (lakehub.server.notebooks.environments.DEFAULT_PACKAGES and the `hub` extra)
SERVER_PACKAGES = ("jupyterhub==6.1.1", "jupyterlab>=4.6,<5")
UV_VERSION = "0.13.9"  # pinned so an image rebuilt from the same Dockerfile resolves alike
# the Jupyter images' user: Zero to JupyterHub's defaults (uid 1000, fs_gid 100, home volume
# mounted at /home/jovyan) work unchanged with these images
USER, UID, GID = "jovyan", 1000, 100
ENV_DIR = "/opt/env"
# Python packages that need a system package the one-machine hub expects on the host
SYSTEM_PACKAGES = {"pyspark": ("default-jre-headless",)}
# a size's guarantee (what the scheduler reserves) as a share of its limit
GUARANTEE = 0.25
_SDK_WHEEL_DIR = "/tmp/lakehub-sdk"
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!=<>~,*\[\]@:/#-]*")


def _project(requirement: str) -> str:
    """``'dask[dataframe]>=2024'`` -> ``'dask'`` (normalised as PyPI does)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    return re.sub(r"[._-]+", "-", name.group().lower()) if name else requirement


def dockerfile(spec: EnvironmentSpec, sdk_requirement: str = "lakehub") -> str:
    """The Dockerfile of ``spec``'s image: its packages in a uv virtual environment.

    Based on ``python:<version>-slim`` rather than ``quay.io/jupyter/base-notebook``: the latter
    carries conda and its own JupyterHub and JupyterLab, which would be a second package manager
    beside uv and a server version that is not the hub's; its Python is tied to the image's
    tag. The slim image is the official interpreter on Debian and nothing else, so the
    environment is built exactly as on one machine (``uv venv`` + ``uv pip install``, packages
    in the same order) and only this text decides what is in it. From the Jupyter images it
    keeps the conventions the Kubernetes tooling expects: user ``jovyan`` with uid 1000 and gid
    100, home ``/home/jovyan``, port 8888. ``USER`` is numeric so that the kubelet can enforce
    ``runAsNonRoot``. Packages that need the system (pyspark: Java) get it from Debian.

    ``sdk_requirement`` is what uv installs as the LakeHub SDK: a requirement resolved from the
    index the build uses (``lakehub``, ``lakehub==0.1.0``), or the file name of a wheel beside
    the Dockerfile (``lakehub-0.1.0-py3-none-any.whl``), optionally followed by
    ``#sha256=<hex>``, which uv verifies and which puts the wheel's content into the image tag.
    """
    if not _SAFE.fullmatch(sdk_requirement):
        raise ValueError(f"invalid SDK requirement {sdk_requirement!r}")
    wheel = sdk_requirement.split("#")[0]
    copy, sdk = "", sdk_requirement
    if wheel.endswith(".whl") and "/" not in wheel:
        copy = f"COPY {wheel} {_SDK_WHEEL_DIR}/{wheel}\n"
        sdk = f"lakehub @ file://{_SDK_WHEEL_DIR}/{sdk_requirement}"
    system = sorted({p for req in spec.packages for p in SYSTEM_PACKAGES.get(_project(req), ())})
    apt = ""
    if system:
        apt = (
            "RUN mkdir -p /usr/share/man/man1 \\\n"  # the JRE's install expects it on slim
            " && apt-get update \\\n"
            f" && apt-get install -y --no-install-recommends {' '.join(system)} \\\n"
            " && rm -rf /var/lib/apt/lists/*\n"
        )
    packages = (*spec.packages, *KERNEL_PACKAGES, *SERVER_PACKAGES, sdk)
    about = " ".join(spec.description.split())  # one comment line, whatever the text
    install = " \\\n".join(f"        {shlex.quote(p)}" for p in packages)
    pinned = overrides(spec.packages)  # packages installed for their jars only
    override = ""
    if pinned:
        override = (
            f" && printf '%s\\n' {' '.join(shlex.quote(p) for p in pinned)} "
            "> /tmp/overrides.txt \\\n"
        )
        install += " \\\n        --override /tmp/overrides.txt"
    return f"""\
# LakeHub notebook environment {spec.name!r}: {about}
# Rendered by lakehub.server.notebooks.k8s; the image tag is a hash of this text.
FROM python:{spec.python}-slim
{apt}RUN pip install --no-cache-dir --root-user-action=ignore uv=={UV_VERSION} \\
 && useradd --create-home --uid {UID} --gid {GID} --shell /bin/bash {USER}
{copy}RUN uv venv --python /usr/local/bin/python {ENV_DIR} \\
{override} && uv pip install --no-cache --python {ENV_DIR}/bin/python \\
{install}
ENV PATH={ENV_DIR}/bin:$PATH \\
    VIRTUAL_ENV={ENV_DIR} \\
    HOME=/home/{USER} \\
    SHELL=/bin/bash
USER {UID}:{GID}
WORKDIR /home/{USER}
EXPOSE 8888
CMD ["jupyterhub-singleuser"]
"""


def image_tag(spec: EnvironmentSpec, registry: str, sdk_requirement: str = "lakehub") -> str:
    """``<registry>/lakehub-env-<name>:<12 hex of the Dockerfile's sha256>``.

    A content tag, not ``latest``: a changed spec is a new tag, so running servers keep their
    image and new ones pull the new one without any pull policy tricks.
    """
    digest = hashlib.sha256(dockerfile(spec, sdk_requirement).encode()).hexdigest()[:12]
    return f"{registry.rstrip('/')}/lakehub-env-{spec.name}:{digest}"


def _named(items: Sequence[Any], name: str | None, what: str) -> str:
    names = [i.name for i in items]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{what}s: need at least one, with distinct names")
    if name is not None and name not in names:
        raise ValueError(f"default {what} {name!r} is not one of {', '.join(names)}")
    return name or names[0]


def profile_list(
    specs: Sequence[EnvironmentSpec],
    sizes: Sequence[Size],
    registry: str,
    default_env: str | None = None,
    default_size: str | None = None,
    sdk_requirement: str = "lakehub",
    guarantee: float = GUARANTEE,
) -> list[dict[str, Any]]:
    """KubeSpawner's ``profile_list``: a profile per environment, its sizes as option "size".

    The profile's ``kubespawner_override`` sets the image; the chosen size's sets
    ``cpu_limit``/``mem_limit`` (the Size, a hard cap as on one machine) and
    ``cpu_guarantee``/``mem_guarantee`` at ``guarantee`` times the limit (a quarter by
    default): what the scheduler reserves per server. Notebooks idle most of the time, so
    reserving the full limit would fit four times fewer servers on a node; the price is that on
    a node short of memory, servers using more than their guarantee are evicted first. Use 1 to
    reserve everything. Memory is in bytes (ints), which KubeSpawner and Kubernetes take as is.
    Defaults: the first environment and the first size. Names and descriptions are escaped,
    as KubeSpawner's form shows them as HTML.
    """
    if not 0 < guarantee <= 1:
        raise ValueError("guarantee must be above 0 and at most 1")
    default_env = _named(specs, default_env, "environment")
    default_size = _named(sizes, default_size, "size")
    choices = {
        size.name: {
            "display_name": html.escape(
                f"{size.name}: {size.description}" if size.description else size.name
            ),
            "default": size.name == default_size,
            "kubespawner_override": {
                "cpu_limit": float(size.cpus),
                "cpu_guarantee": float(size.cpus) * guarantee,
                "mem_limit": size.memory,
                "mem_guarantee": int(size.memory * guarantee),
            },
        }
        for size in sizes
    }
    return [
        {
            "display_name": html.escape(spec.name),
            "slug": spec.name,
            "description": html.escape(
                f"{spec.description.rstrip('.')}. Python {spec.python}; packages: "
                + (", ".join(spec.packages) or "none beyond the kernel and the LakeHub SDK")
            ),
            "default": spec.name == default_env,
            "kubespawner_override": {"image": image_tag(spec, registry, sdk_requirement)},
            "profile_options": {"size": {"display_name": "Size", "choices": deepcopy(choices)}},
        }
        for spec in specs
    ]


def render(
    specs: Sequence[EnvironmentSpec],
    sizes: Sequence[Size],
    registry: str,
    sdk_requirement: str = "lakehub",
) -> dict[str, Any]:
    """``{"profile_list": [...], "images": {name: {"tag": ..., "dockerfile": ...}}}``."""
    return {
        "profile_list": profile_list(specs, sizes, registry, sdk_requirement=sdk_requirement),
        "images": {
            spec.name: {
                "tag": image_tag(spec, registry, sdk_requirement),
                "dockerfile": dockerfile(spec, sdk_requirement),
            }
            for spec in specs
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lakehub.server.notebooks.k8s",
        description="Write a Dockerfile per built-in notebook environment and the KubeSpawner "
        "profile list that offers them with the built-in sizes.",
    )
    parser.add_argument("--registry", required=True, help="e.g. registry.example.org/lakehub")
    parser.add_argument("--out", required=True, type=Path, help="directory to write into")
    parser.add_argument(
        "--sdk",
        default="lakehub",
        help="the SDK: a requirement uv resolves "
        "from the build's index, or the path of a wheel (`uv build --wheel`), "
        "copied beside each Dockerfile (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    sdk = args.sdk
    wheel = Path(args.sdk) if args.sdk.endswith(".whl") else None
    if wheel:
        if not wheel.is_file():
            parser.error(f"no such wheel: {wheel}")
        sdk = f"{wheel.name}#sha256={hashlib.sha256(wheel.read_bytes()).hexdigest()}"
    try:
        rendered = render(BUILTIN_ENVIRONMENTS, DEFAULT_SIZES, args.registry, sdk)
    except ValueError as e:
        parser.error(str(e))
    for name, image in rendered["images"].items():
        (args.out / name).mkdir(parents=True, exist_ok=True)
        (args.out / name / "Dockerfile").write_text(image["dockerfile"])
        if wheel:
            shutil.copyfile(wheel, args.out / name / wheel.name)
        print(f"{args.out / name}  ->  {image['tag']}")
    profiles = args.out / "kubespawner_profiles.json"
    profiles.write_text(json.dumps(rendered["profile_list"], indent=2) + "\n")
    print(profiles)


if __name__ == "__main__":
    main()
