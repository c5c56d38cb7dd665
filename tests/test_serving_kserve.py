"""An endpoint as a KServe InferenceService: the rendered manifest read back by KServe's own
Python models (and the Kubernetes models they embed), as a client would read it from the API.
No cluster. The generated models keep the fields they know and drop the others, so a manifest
is valid when reading it and writing it again loses nothing and changes no value."""

from __future__ import annotations

import re
from typing import Any

import pytest

from lakehub.server.serving.kserve import inference_service

kserve = pytest.importorskip("kserve")
kubernetes_client = pytest.importorskip("kubernetes.client")
ApiClient = pytest.importorskip("kserve.api_client").ApiClient

LABEL = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")  # Kubernetes' label value
PRIMITIVES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
PLAIN = {
    "name": "churn",
    "namespace": "lakehub-serving",
    "owner": "alice",
    "model": "churn",
    "version": 3,
    "storage_uri": "s3://lakehub-models/alice/churn/3",
    "replicas": 2,
    "cpus": 0.5,
    "memory": 1 << 30,
}


def _read(data: Any, kind: str) -> Any:
    """``data`` as the model class ``kind`` names, the way the generated clients deserialize:
    known fields by their JSON names, primitives converted, anything else dropped."""
    if data is None:
        return None
    if m := re.fullmatch(r"(?:list|List)\[(.+)\]", kind):
        return [_read(item, m[1]) for item in data]
    if m := re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", kind):
        return {k: _read(v, m[1] or m[2]) for k, v in data.items()}
    if kind in PRIMITIVES:
        return PRIMITIVES[kind](data)
    if kind == "object":
        return data
    cls = getattr(kserve.models, kind, None) or getattr(kubernetes_client, kind)
    return cls(
        **{
            attr: _read(data[key], cls.openapi_types[attr])
            for attr, key in cls.attribute_map.items()
            if key in data
        }
    )


def _lost(sent: Any, back: Any, path: str = "") -> list[str]:
    """Where the round trip dropped a field or changed a value (fields the models add with
    their defaults are not losses)."""
    if isinstance(sent, dict):
        if not isinstance(back, dict):
            return [path or "."]
        return [
            p
            for key, value in sent.items()
            for p in (
                _lost(value, back[key], f"{path}.{key}".lstrip("."))
                if key in back
                else [f"{path}.{key}".lstrip(".")]
            )
        ]
    if isinstance(sent, list):
        if not isinstance(back, list) or len(back) != len(sent):
            return [path]
        return [p for i, item in enumerate(sent) for p in _lost(item, back[i], f"{path}[{i}]")]
    return [] if type(sent) is type(back) and sent == back else [path]


def validated(manifest: dict[str, Any]) -> Any:
    """The manifest as a ``V1beta1InferenceService``, having checked the round trip."""
    isvc = _read(manifest, "V1beta1InferenceService")
    assert isinstance(isvc, kserve.V1beta1InferenceService)
    assert _lost(manifest, ApiClient().sanitize_for_serialization(isvc)) == []
    return isvc


def test_a_plain_endpoint() -> None:
    manifest = inference_service(**PLAIN)
    isvc = validated(manifest)
    assert (isvc.api_version, isvc.kind) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert (isvc.metadata.name, isvc.metadata.namespace) == ("churn", "lakehub-serving")
    assert isvc.metadata.labels == {
        "app.kubernetes.io/managed-by": "lakehub",
        "lakehub.io/owner": "alice",
        "lakehub.io/model": "churn",
        "lakehub.io/version": "3",
    }
    predictor = isvc.spec.predictor
    assert (predictor.min_replicas, predictor.max_replicas) == (2, 2)
    assert predictor.canary_traffic_percent is None and predictor.service_account_name is None
    assert "canaryTrafficPercent" not in manifest["spec"]["predictor"]
    model = predictor.model
    assert model.model_format.name == "mlflow" and model.protocol_version == "v2"
    assert model.storage_uri == "s3://lakehub-models/alice/churn/3/"  # not version 30's files
    assert model.resources.requests == model.resources.limits == {"cpu": "500m", "memory": "1024Mi"}
    assert model.image is None and model.runtime is None


def test_a_canary_and_the_optional_fields() -> None:
    canary = {**PLAIN, "version": 4, "storage_uri": "s3://lakehub-models/alice/churn/4/"}
    isvc = validated(
        inference_service(**canary, canary_share=10, service_account="lakehub-lake-alice")
    )
    assert isvc.spec.predictor.canary_traffic_percent == 10
    assert isvc.spec.predictor.service_account_name == "lakehub-lake-alice"
    assert isvc.metadata.labels["lakehub.io/version"] == "4"
    assert isvc.spec.predictor.model.storage_uri == "s3://lakehub-models/alice/churn/4/"
    isvc = validated(inference_service(**PLAIN, image="registry.example.org/serve-env:abc"))
    assert isvc.spec.predictor.model.image == "registry.example.org/serve-env:abc"
    with pytest.raises(ValueError, match="percentage"):
        inference_service(**PLAIN, canary_share=101)


@pytest.mark.parametrize(
    "name", ["", "Churn", "churn_model", "churn.v2", "-churn", "churn-", "1churn", "a" * 54]
)
def test_a_name_kserve_refuses_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cannot name an InferenceService: it needs 1 to 53"):
        inference_service(**{**PLAIN, "name": name})


def test_other_refusals() -> None:
    for change, words in [
        ({"namespace": "Team A"}, "DNS-1123"),
        ({"storage_uri": "/srv/models/churn/3"}, "s3://"),
        ({"replicas": 0}, "at least one replica"),
        ({"memory": 512}, "in bytes"),
        ({"cpus": 0}, "at least 0.001"),
    ]:
        with pytest.raises(ValueError, match=words):
            inference_service(**{**PLAIN, **change})


def test_labels_are_sanitized_and_the_raw_names_kept() -> None:
    isvc = validated(inference_service(**{**PLAIN, "model": "Team.Churn Model"}))
    assert isvc.metadata.labels["lakehub.io/model"] == "Team.Churn-Model"
    assert isvc.metadata.annotations["lakehub.io/model"] == "Team.Churn Model"
    for model in ["x" * 100, " --Ünïcödé model!! ", "a.b_c-d", "...", "é" * 10, "9" * 63 + ".z"]:
        labels = inference_service(**{**PLAIN, "model": model})["metadata"]["labels"]
        value = labels["lakehub.io/model"]
        assert len(value) <= 63 and LABEL.fullmatch(value), (model, value)
    owner = inference_service(**{**PLAIN, "owner": "ada@example.org"})["metadata"]
    assert owner["labels"]["lakehub.io/owner"] == "ada-example.org"
    assert owner["annotations"]["lakehub.io/owner"] == "ada@example.org"


@pytest.mark.parametrize(
    ("cpus", "memory", "want"),
    [
        (2, 4 << 30, ("2", "4096Mi")),
        (1.5, 1536 << 20, ("1500m", "1536Mi")),
        (0.25, 300 << 20, ("250m", "300Mi")),
    ],
)
def test_sizes(cpus: float, memory: int, want: tuple[str, str]) -> None:
    isvc = validated(inference_service(**{**PLAIN, "cpus": cpus, "memory": memory}))
    cpu, mem = want
    assert isvc.spec.predictor.model.resources.limits == {"cpu": cpu, "memory": mem}


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [
        (("spec", "predictor"), "canaryTraficPercent", 10),  # misspelt
        (("spec", "predictor", "model"), "storageURI", "s3://b/p/"),  # wrong case
        (("spec", "predictor", "model", "modelFormat"), "flavor", "mlflow"),  # not a field
        (("metadata",), "label", {"a": "b"}),  # singular
        (("spec", "predictor"), "minReplicas", "2"),  # a string for an integer
        (("spec", "predictor", "model", "resources", "limits"), "cpu", 0.5),  # not a quantity
    ],
)
def test_the_round_trip_catches_what_kserve_would_not_read(
    where: tuple[str, ...], field: str, value: Any
) -> None:
    manifest = inference_service(**PLAIN)
    node = manifest
    for key in where:
        node = node[key]
    node[field] = value
    back = ApiClient().sanitize_for_serialization(_read(manifest, "V1beta1InferenceService"))
    assert _lost(manifest, back) == [".".join((*where, field))]
    with pytest.raises(AssertionError):
        validated(manifest)
