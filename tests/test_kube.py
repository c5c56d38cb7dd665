"""LakeHub's Kubernetes manifests (``lakehub.server.kube``), rendered in-process: every object
valid against Kubernetes' own OpenAPI schemas (strict: an unknown field fails), every reference
leading to an object rendered or a Secret the operator is told to create, and no secret value
anywhere. No cluster and no hub needed."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from traitlets.config import PyFileConfigLoader

from lakehub.server.config import Settings
from lakehub.server.kube import KubeError, render
from lakehub.server.kube.__main__ import main, to_yaml
from lakehub.server.kube.settings import overrides

# the oldest release with ValidatingAdmissionPolicy in v1, and the newest the validator ships
VERSIONS = ("1.30.0", "1.37.0")
SECRET_VALUES = ("lake-sekret-0xA7", "oauth-sekret-0xB3", "db-pw-0xC9", "smtp-pw-0xD1", "AKIA0xE5")
IMAGE = "registry.example.org/lakehub/lakehub:0.1.0"
REGISTRY = "registry.example.org/lakehub"


def settings(**changes: Any) -> Settings:
    values: dict[str, Any] = {
        "lake_backend": "s3-iam",
        "lake_endpoint_url": "https://s3.example.org",
        "lake_admin_key_id": "AKIA0xE5",
        "lake_admin_secret": "lake-sekret-0xA7",
        "db_url": "postgresql+psycopg2://lakehub:db-pw-0xC9@postgres.db:5432/lakehub",
        "auth": "oauth",
        "oauth_client_id": "lakehub",
        "oauth_client_secret": "oauth-sekret-0xB3",
        "oauth_authorize_url": "https://id.example.org/authorize",
        "oauth_token_url": "https://id.example.org/token",
        "smtp_host": "mail.example.org",
        "smtp_user": "lakehub",
        "smtp_password": "smtp-pw-0xD1",
        "cull_idle_timeout": 1200,
        "jobs_webhook_hosts": ["hooks.internal", 'odd "quoted" \\ name\x7f'],
    }
    return Settings(**{**values, **changes})


@pytest.fixture(scope="module")
def files() -> dict[str, Any]:
    return render(settings(), image=IMAGE, registry=REGISTRY, public_url="https://hub.example.org")


def objects(files: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: obj
        for name, obj in files.items()
        if isinstance(obj, dict) and "apiVersion" in obj and name != "kustomization.yaml"
    }


def valid(obj: dict[str, Any]) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def test_every_object_is_valid_for_kubernetes(files: dict[str, Any]) -> None:
    kinds = {obj["kind"] for obj in objects(files).values()}
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "PersistentVolumeClaim"} <= kinds
    assert {"ServiceAccount", "Role", "RoleBinding", "ValidatingAdmissionPolicy"} <= kinds
    for name, obj in objects(files).items():
        try:
            valid(obj)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{name}: {'.'.join(map(str, err.path))}: {err.message}")


def test_a_planted_error_fails_validation(files: dict[str, Any]) -> None:
    good = files["deployment-hub.yaml"]
    valid(good)
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["replicas"] = "one"
    unknown = copy.deepcopy(good)
    unknown["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    wrong_port = copy.deepcopy(good)
    wrong_port["spec"]["template"]["spec"]["containers"][1]["ports"][0]["containerPort"] = "8080"
    for planted in (wrong_type, unknown, wrong_port):
        with pytest.raises(kubernetes_validate.ValidationError):
            valid(planted)


def test_kustomization_lists_exactly_the_objects(files: dict[str, Any]) -> None:
    kustomization = files["kustomization.yaml"]
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(objects(files))
    assert len(set(kustomization["resources"])) == len(kustomization["resources"])


def _pod_specs(files: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (obj["metadata"]["namespace"], obj["spec"]["template"]["spec"])
        for obj in objects(files).values()
        if obj["kind"] == "Deployment"
    ]


def test_every_reference_leads_somewhere(files: dict[str, Any]) -> None:
    rendered = {
        (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        for obj in objects(files).values()
    }
    # what the operator creates, as secrets.txt lists it: "<namespace>/<name>: key, key"
    created = {}
    for line in files["secrets.txt"].splitlines():
        if line and not line.startswith("#") and "<user>" not in line:
            where, _, keys = line.partition(": ")
            namespace, _, name = where.partition("/")
            created[(namespace, name)] = set(keys.split(", "))
    wanted: list[tuple[str, str, str, str | None]] = []  # kind, namespace, name, key
    for ns, pod in _pod_specs(files):
        account = pod.get("serviceAccountName")
        if account:
            wanted.append(("ServiceAccount", ns, account, None))
        for vol in pod.get("volumes", []):
            if "secret" in vol:
                wanted.append(("Secret", ns, vol["secret"]["secretName"], None))
            if "configMap" in vol:
                wanted.append(("ConfigMap", ns, vol["configMap"]["name"], None))
            if "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                wanted.append(("PersistentVolumeClaim", ns, claim, None))
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod.get("initContainers", []) + pod["containers"]:
            for ref in c.get("envFrom", []):
                wanted.append(("Secret", ns, ref["secretRef"]["name"], None))
            for env in c.get("env", []):
                if "valueFrom" in env:
                    ref = env["valueFrom"]["secretKeyRef"]
                    wanted.append(("Secret", ns, ref["name"], ref["key"]))
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{c['name']} mounts no volume {mount['name']}"
                vol, sub = volumes[mount["name"]], mount.get("subPath")
                if sub and "configMap" in vol:
                    data = files[f"configmap-{vol['configMap']['name']}.yaml"]["data"]
                    assert sub in data, f"{c['name']} mounts a key the ConfigMap lacks: {sub}"
                if sub and "secret" in vol:
                    wanted.append(("Secret", ns, vol["secret"]["secretName"], sub))
    for obj in objects(files).values():
        if obj["kind"] == "RoleBinding":
            ns = obj["metadata"]["namespace"]
            wanted.append(("Role", ns, obj["roleRef"]["name"], None))
            for s in obj["subjects"]:
                wanted.append(("ServiceAccount", s["namespace"], s["name"], None))
        if obj["kind"] == "ValidatingAdmissionPolicyBinding":
            wanted.append(("ValidatingAdmissionPolicy", "", obj["spec"]["policyName"], None))
    hub_config = files["configmap-lakehub-config.yaml"]["data"]["jupyterhub_config.py"]
    assert '"name": "lakehub-spark"' in hub_config and '"lakehub-spark-driver"' in hub_config
    wanted += [
        ("ConfigMap", "lakehub-users", "lakehub-spark", None),
        ("ServiceAccount", "lakehub-users", "lakehub-spark-driver", None),
    ]
    values = files["dask-gateway-values.yaml"]["gateway"]["auth"]["jupyterhub"]
    wanted.append(
        ("Secret", "lakehub", values["apiTokenFromSecretName"], values["apiTokenFromSecretKey"])
    )
    missing = []
    for kind, ns, name, key in wanted:
        if kind == "Secret":
            if (ns, name) not in created or (key is not None and key not in created[(ns, name)]):
                missing.append(f"Secret {ns}/{name} {key or ''}")
        elif (kind, ns, name) not in rendered:
            missing.append(f"{kind} {ns}/{name}")
    assert not missing, f"referenced but neither rendered nor created by the operator: {missing}"
    assert ("lakehub", "lakehub-secrets") in created and ("lakehub", "lakehub-state") in created


def test_every_service_reaches_a_container_port(files: dict[str, Any]) -> None:
    pods = [
        (obj["metadata"]["namespace"], obj["spec"]["template"])
        for obj in objects(files).values()
        if obj["kind"] == "Deployment"
    ]
    for obj in objects(files).values():
        if obj["kind"] == "Deployment":
            selector = obj["spec"]["selector"]["matchLabels"]
            assert selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items()
        if obj["kind"] != "Service":
            continue
        ns, selector = obj["metadata"]["namespace"], obj["spec"]["selector"]
        matched = [
            t for n, t in pods if n == ns and selector.items() <= t["metadata"]["labels"].items()
        ]
        assert matched, f"Service {obj['metadata']['name']} selects no Deployment's pods"
        ports = {
            p[key]
            for t in matched
            for c in t["spec"]["containers"]
            for p in c.get("ports", [])
            for key in ("name", "containerPort")
            if key in p
        }
        for port in obj["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{obj['metadata']['name']}: {port['targetPort']}"


def test_pods_are_bounded_probed_and_not_root(files: dict[str, Any]) -> None:
    for _, pod in _pod_specs(files):
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod.get("initContainers", []) + pod["containers"]:
            assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
        for c in pod["containers"]:
            assert c["readinessProbe"]["httpGet"]["path"], c["name"]
    probes = {
        c["name"]: c["readinessProbe"]["httpGet"]["path"]
        for _, pod in _pod_specs(files)
        for c in pod["containers"]
    }
    assert probes == {
        "hub": "/hub/health",
        "api": "/services/lakehub/api/health",
        "proxy": "/_chp_healthz",
        "ingest": "/health",
    }


def _everything(files: dict[str, Any]) -> str:
    return "\n".join(v if isinstance(v, str) else to_yaml(v) for v in files.values())


def test_no_secret_value_is_rendered(files: dict[str, Any]) -> None:
    text = _everything(files)
    assert "lake-sekret" not in text
    for secret in SECRET_VALUES:
        assert secret not in text, f"a secret value is in the output: {secret[:6]}..."
    assert "lakehub:db-pw" not in text and "postgres.db" not in text  # db_url is all secret


def test_the_settings_file_holds_the_settings(files: dict[str, Any]) -> None:
    s = settings()
    toml = tomllib.loads(files["configmap-lakehub-config.yaml"]["data"]["lakehub.toml"])
    assert not {"db_url", "lake_admin_secret", "oauth_client_secret", "smtp_password"} & set(toml)
    for name, value in toml.items():
        expected = overrides(s).get(name, getattr(s, name))
        assert value == expected, name
    assert toml["jobs_webhook_hosts"][1] == 'odd "quoted" \\ name\x7f'
    assert toml["compute_engines"] == {} and toml["cull_idle_timeout"] == 1200
    runtime = json.loads(files["configmap-lakehub-config.yaml"]["data"]["runtime.json"])
    assert runtime["front_url"] == "https://hub.example.org"
    assert runtime["ports"]["api"] == 8080 and runtime["ports"]["forward"] == 24224


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"lake_backend": "seaweedfs"}, "lake_backend must be 's3-iam'"),
        ({"lake_endpoint_url": None}, "lake_endpoint_url is missing"),
        ({"db_url": None}, "db_url must be a PostgreSQL URL"),
        ({"db_url": "sqlite:////srv/lakehub.sqlite"}, "not sqlite URL"),
    ],
)
def test_refuses_a_lake_or_database_on_one_machine(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(KubeError) as err:
        render(settings(**changes), image=IMAGE, registry=REGISTRY)
    message = str(err.value)
    assert named in message and "\n" not in message
    assert message.startswith("cannot render for Kubernetes: ")


def test_refuses_the_defaults_naming_all_that_is_missing() -> None:
    with pytest.raises(KubeError) as err:
        render(Settings(), image=IMAGE, registry=REGISTRY)
    message = str(err.value)
    assert "\n" not in message
    for name in ("lake_backend", "lake_endpoint_url", "db_url"):
        assert name in message


def test_the_hub_configuration_loads_as_jupyterhub_would(
    files: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = files["configmap-lakehub-config.yaml"]["data"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "runtime.json").write_text(data["runtime.json"])
    for key in ("lakehub.toml", "kubespawner_profiles.json"):
        (tmp_path / key).write_text(data[key])
    text = data["jupyterhub_config.py"].replace("/etc/lakehub", str(tmp_path))
    (tmp_path / "jupyterhub_config.py").write_text(text)
    monkeypatch.setenv("LAKEHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LAKEHUB_CONFIG", str(tmp_path / "lakehub.toml"))
    monkeypatch.setenv("LAKEHUB_DB_URL", "postgresql://lakehub:x@db/lakehub")
    monkeypatch.setenv("LAKEHUB_OAUTH_CLIENT_SECRET", "x")
    c = PyFileConfigLoader("jupyterhub_config.py", str(tmp_path)).load_config()
    assert c.JupyterHub.spawner_class == "kubespawner.KubeSpawner"
    assert c.KubeSpawner.namespace == "lakehub-users"
    assert [p["slug"] for p in c.KubeSpawner.profile_list] == [
        "datascience",
        "minimal",
        "dask",
        "spark",
    ]
    urls = {s["name"]: s.get("url") for s in c.JupyterHub.services}
    assert urls["lakehub"] == "http://api.lakehub.svc.cluster.local:8080"
    assert urls["dask-gateway"].startswith("http://traefik-dask-gateway.lakehub.svc")
    assert "idle-culler" in urls  # the one-machine configuration's, unchanged
    assert c.JupyterHub.hub_connect_url == "http://hub.lakehub.svc.cluster.local:8081"
    assert c.ConfigurableHTTPProxy.api_url == "http://proxy-api.lakehub.svc.cluster.local:8001"


def test_the_command_writes_what_kubectl_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "lakehub.toml"
    conf.write_text(
        'lake_backend = "s3-iam"\nlake_endpoint_url = "https://s3.example.org"\n'
        'lake_admin_secret = "lake-sekret-0xA7"\n'
        'db_url = "postgresql://lakehub:db-pw-0xC9@postgres.db/lakehub"\ningest = false\n'
    )
    monkeypatch.setenv("LAKEHUB_CONFIG", str(conf))
    out = tmp_path / "k8s"
    args = ["--out", str(out), "--image", IMAGE, "--registry", REGISTRY, "--namespace", "lh"]
    assert main(args) == 0
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    on_disk = {p.name for p in out.glob("*.yaml")} - {
        "kustomization.yaml",
        "dask-gateway-values.yaml",
    }
    assert set(kustomization["resources"]) == on_disk
    assert not any("ingest" in name for name in on_disk)  # ingest = false: no receivers
    for name in on_disk:
        obj = yaml.safe_load((out / name).read_text())
        valid(obj)
        assert obj["metadata"].get("namespace", "lh") in ("lh", "lh-users")
    assert (out / "images" / "dask" / "Dockerfile").is_file()
    text = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert "lake-sekret" not in text and "db-pw" not in text
    monkeypatch.setenv("LAKEHUB_CONFIG", str(tmp_path / "none.toml"))
    conf2 = tmp_path / "none.toml"
    conf2.write_text('db_url = "sqlite:////tmp/x.sqlite"\n')
    with pytest.raises(SystemExit):
        main(args)
    assert "cannot render for Kubernetes: lake_backend must be 's3-iam'" in capsys.readouterr().err
