"""The Kubernetes mapping: Dockerfiles per environment and a profile list the real KubeSpawner
takes. No cluster: KubeSpawner is built against a kubeconfig whose API server is never called,
and driven through its own form parsing, profile loading and pod manifest."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lakehub.server.notebooks import k8s
from lakehub.server.notebooks.specs import (
    BUILTIN_ENVIRONMENTS,
    DEFAULT_SIZES,
    KERNEL_PACKAGES,
    EnvironmentSpec,
    Size,
)

REGISTRY = "registry.example.org/lakehub"
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: offline, user: {token: unused}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
"""
TAGS = {spec.name: k8s.image_tag(spec, REGISTRY) for spec in BUILTIN_ENVIRONMENTS}
SIZES = {size.name: size for size in DEFAULT_SIZES}


@pytest.fixture
def spawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, Any]], Any]:
    """``spawn(user_options)``: a KubeSpawner given the rendered profile list and the options,
    after ``load_user_options()`` (the first thing its ``start`` does, before any API call);
    returns it and the pod manifest it would create."""
    import kubernetes_asyncio.config.kube_config as kube_config
    from kubespawner import KubeSpawner

    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    profiles = k8s.render(BUILTIN_ENVIRONMENTS, DEFAULT_SIZES, REGISTRY)["profile_list"]
    # through JSON, as a hub reads it from kubespawner_profiles.json
    profiles = json.loads(json.dumps(profiles))

    def run(user_options: dict[str, Any]) -> Any:
        async def go() -> Any:
            # _mock: kubespawner's own test switch, a stand-in user and hub
            spawner = KubeSpawner(_mock=True, profile_list=profiles)
            spawner.user_options = user_options
            await spawner.load_user_options()
            return spawner, await spawner.get_pod_manifest()

        return asyncio.run(go())

    return run


@pytest.mark.parametrize("env", [s.name for s in BUILTIN_ENVIRONMENTS])
@pytest.mark.parametrize("size", list(SIZES))
def test_kubespawner_applies_environment_and_size(spawn: Any, env: str, size: str) -> None:
    spawner, pod = spawn({"profile": env, "size": size})
    want = SIZES[size]
    assert spawner.image == TAGS[env]
    assert spawner.cpu_limit == want.cpus
    assert spawner.mem_limit == want.memory
    assert spawner.cpu_guarantee == want.cpus / 4
    assert spawner.mem_guarantee == want.memory // 4
    container = pod.spec.containers[0]
    assert container.image == TAGS[env]
    assert container.resources.limits == {"cpu": want.cpus, "memory": want.memory}
    assert container.resources.requests == {"cpu": want.cpus / 4, "memory": want.memory // 4}
    assert container.args is None  # the image's CMD, jupyterhub-singleuser, starts the server


def test_kubespawner_form_and_defaults(spawn: Any) -> None:
    spawner, _ = spawn({})  # nothing chosen (e.g. a REST API spawn): the first of each
    assert spawner.image == TAGS["datascience"]
    assert spawner.mem_limit == SIZES["small"].memory
    # what the spawn page submits, parsed by KubeSpawner's own form handler
    form_data = {"profile": ["dask"], "profile-option-dask--size": ["large"]}
    options = spawner.options_from_form(form_data)
    assert options == {"profile": "dask", "size": "large"}
    spawner, _ = spawn(options)
    assert (spawner.image, spawner.cpu_limit) == (TAGS["dask"], 4.0)
    form = spawner.options_form
    for spec in BUILTIN_ENVIRONMENTS:
        assert f'value="{spec.name}"' in form
    assert 'name="profile-option-spark--size"' in form and '<option value="medium"' in form


def test_kubespawner_refuses_unknown_choices(spawn: Any) -> None:
    with pytest.raises(KeyError, match="huge"):  # kubespawner looks the choice up in the list
        spawn({"profile": "dask", "size": "huge"})
    with pytest.raises(ValueError, match="No such profile: gpu"):
        spawn({"profile": "gpu", "size": "small"})


def test_profile_list_defaults_and_guarantee() -> None:
    profiles = k8s.profile_list(
        BUILTIN_ENVIRONMENTS,
        DEFAULT_SIZES,
        REGISTRY,
        default_env="spark",
        default_size="large",
        guarantee=1,
    )
    assert [p["slug"] for p in profiles if p["default"]] == ["spark"]
    choices = profiles[0]["profile_options"]["size"]["choices"]
    assert [name for name, c in choices.items() if c["default"]] == ["large"]
    large = choices["large"]["kubespawner_override"]
    assert large["mem_guarantee"] == large["mem_limit"] and large["cpu_guarantee"] == 4.0
    assert "s3fs==2026.9.0" in profiles[0]["description"]
    with pytest.raises(ValueError, match="default size 'huge'"):
        k8s.profile_list(BUILTIN_ENVIRONMENTS, DEFAULT_SIZES, REGISTRY, default_size="huge")
    odd = EnvironmentSpec("odd", "<b>bold</b> claims", "3.12", ("pandas<3",))
    (profile,) = k8s.profile_list([odd], DEFAULT_SIZES, REGISTRY)
    assert "<" not in profile["description"] and "pandas&lt;3" in profile["description"]


@pytest.mark.parametrize("spec", BUILTIN_ENVIRONMENTS, ids=lambda s: s.name)
def test_dockerfile_of_each_builtin(spec: EnvironmentSpec) -> None:
    text = k8s.dockerfile(spec)
    lines = text.splitlines()
    # the words the shell sees
    installed = shlex.split(text.replace("\\\n", " "), comments=True)
    for package in (*spec.packages, *KERNEL_PACKAGES, "jupyterlab>=4.6,<5", "lakehub"):
        assert package in installed
    assert "jupyterhub==6.1.1" in installed
    from importlib.metadata import version

    assert f"jupyterhub=={version('jupyterhub')}" in installed  # the hub's own version
    assert lines[2] == f"FROM python:{spec.python}-slim"
    assert "USER 1000:100" in lines and lines.index("USER 1000:100") > max(
        i for i, line in enumerate(lines) if line.startswith("RUN")
    )  # every RUN is done as root before, everything after runs as jovyan
    assert lines[-1] == 'CMD ["jupyterhub-singleuser"]'
    assert ("default-jre-headless" in text) == (spec.name == "spark")
    assert k8s.dockerfile(spec) == text
    assert k8s.image_tag(spec, REGISTRY + "/") == TAGS[spec.name]
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    assert TAGS[spec.name] == f"{REGISTRY}/lakehub-env-{spec.name}:{digest}"


def test_dockerfile_follows_the_spec() -> None:
    spec = BUILTIN_ENVIRONMENTS[0]
    changed = [
        dataclasses.replace(spec, packages=(*spec.packages, "xarray")),
        dataclasses.replace(spec, python="3.12"),
        dataclasses.replace(spec, description="other words"),
    ]
    texts = {k8s.dockerfile(s) for s in [spec, *changed]}
    tags = {k8s.image_tag(s, REGISTRY) for s in [spec, *changed]}
    assert len(texts) == len(tags) == 4
    assert "FROM python:3.12-slim" in k8s.dockerfile(changed[1])
    assert k8s.dockerfile(spec, "lakehub==0.1.0") != k8s.dockerfile(spec)
    # a multi-line description stays one comment line
    sneaky = dataclasses.replace(spec, description="fine\nRUN rm -rf /")
    assert "\nRUN rm" not in k8s.dockerfile(sneaky)
    with pytest.raises(ValueError, match="invalid SDK requirement"):
        k8s.dockerfile(spec, "lakehub; rm -rf /")


def test_cli_writes_dockerfiles_and_profiles(tmp_path: Path) -> None:
    wheel = tmp_path / "lakehub-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    for out, sdk in [(tmp_path / "index", []), (tmp_path / "wheel", ["--sdk", str(wheel)])]:
        argv = [sys.executable, "-m", "lakehub.server.notebooks.k8s", "--registry", REGISTRY]
        subprocess.run([*argv, "--out", str(out), *sdk], check=True, capture_output=True)
        profiles = json.loads((out / "kubespawner_profiles.json").read_text())
        assert [p["slug"] for p in profiles] == [s.name for s in BUILTIN_ENVIRONMENTS]
        for spec, profile in zip(BUILTIN_ENVIRONMENTS, profiles, strict=True):
            text = (out / spec.name / "Dockerfile").read_text()
            tag = profile["kubespawner_override"]["image"]
            assert tag.endswith(hashlib.sha256(text.encode()).hexdigest()[:12])
            if sdk:
                assert (out / spec.name / wheel.name).read_bytes() == wheel.read_bytes()
                assert f"COPY {wheel.name} " in text and f"#sha256={sha}" in text
            else:
                assert tag == TAGS[spec.name]
                assert text == k8s.dockerfile(spec)
    assert profiles == k8s.profile_list(
        BUILTIN_ENVIRONMENTS,
        DEFAULT_SIZES,
        REGISTRY,
        sdk_requirement=f"{wheel.name}#sha256={sha}",
    )


def test_sizes_fit_kubespawner_units() -> None:
    # a fractional CPU and an odd byte count pass through unchanged
    size = Size("tiny", 0.5, 300 * 2**20 + 1)
    (profile,) = k8s.profile_list(BUILTIN_ENVIRONMENTS[:1], [size], REGISTRY)
    override = profile["profile_options"]["size"]["choices"]["tiny"]["kubespawner_override"]
    assert override == {
        "cpu_limit": 0.5,
        "cpu_guarantee": 0.125,
        "mem_limit": 300 * 2**20 + 1,
        "mem_guarantee": (300 * 2**20 + 1) // 4,
    }


def test_dask_gateway_kubernetes_config_maps_the_hubs_rules() -> None:
    """The rendered config loads into dask-gateway's own Kubernetes classes and gives each
    user's pods their own lake Secret and the hub's caps."""
    from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
    from dask_gateway_server.models import User
    from traitlets.config import Config

    from lakehub.server.compute.k8s import Limits, render

    image = "registry.example.org/lakehub/lakehub-env-dask:abc123"
    text = render(
        image,
        "http://hub:8081/hub/api",
        limits=Limits(max_workers=6, max_worker_cores=2, max_worker_memory=4 << 30),
    )
    c = Config()
    exec(compile(text, "extraConfig", "exec"), {"c": c})  # noqa: S102 (our own rendering)
    cfg = KubeClusterConfig(config=c)
    assert cfg.image == image
    assert (cfg.scheduler_cmd, cfg.worker_cmd) == (["dask", "scheduler"], ["dask", "worker"])
    assert cfg.cluster_max_workers == 6
    assert c.DaskGateway.backend_class.endswith("KubeBackend")
    options = c.Backend.cluster_options
    chosen = options.parse_options({"worker_cores": 2, "worker_memory": 1.5})
    conf = options.get_configuration(chosen, User("ada"))
    assert conf["worker_memory"] == conf["worker_memory_limit"] == int(1.5 * 2**30)
    assert conf["worker_extra_container_config"] == {
        "envFrom": [{"secretRef": {"name": "lakehub-lake-ada"}}]
    }
    assert KubeClusterConfig(config=c, **conf).worker_cores_limit == 2
    with pytest.raises(ValueError, match="worker_cores"):
        options.parse_options({"worker_cores": 3})  # above the hub's cap
