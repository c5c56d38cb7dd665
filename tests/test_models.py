"""Experiments and models through MLflow's own client (in-process layer): autolog, register, alias,
load by alias; who sees and changes what (users, a space's read and write grants, the lake); bad
input; deleted files leaving the lake after the grace period."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from inproc import InProc

pytest.importorskip("mlflow")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

API = "/services/lakehub/mlflow"


@pytest.fixture(autouse=True)
def _mlflow_env(inproc: InProc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", inproc.url + API)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a refusal is an answer
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


@contextmanager
def as_user(inproc: InProc, name: str) -> Iterator[MlflowClient]:
    """MLflow's client (and its fluent API) acting with ``name``'s LakeHub token."""
    before = os.environ.get("MLFLOW_TRACKING_TOKEN")
    os.environ["MLFLOW_TRACKING_TOKEN"] = inproc.token(name)
    try:
        yield MlflowClient()
    finally:
        mlflow.end_run()
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        else:
            os.environ["MLFLOW_TRACKING_TOKEN"] = before


def refused(code: str, fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(MlflowException) as err:
        fn(*args, **kwargs)
    assert err.value.error_code == code, err.value
    return str(err.value)


def keys(inproc: InProc, bucket: str, prefix: str = "mlflow/") -> list[str]:
    s3 = inproc.platform.directory.lake.admin()
    got = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in got)


def user_s3(inproc: InProc, name: str) -> Any:
    from lakehub.server.lake.base import s3_client

    c = inproc.platform.directory.credentials(name)
    return s3_client(c.endpoint_url, c.access_key_id, c.secret_access_key)


def train_and_register(name: str, experiment: str) -> tuple[str, str]:
    """Autologged scikit-learn training and a registration, as a notebook would; (run, version)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    mlflow.set_experiment(experiment)
    mlflow.sklearn.autolog(log_input_examples=False, silent=True)
    try:
        with mlflow.start_run() as run:
            LogisticRegression(max_iter=300).fit(x, y)
            for step in range(5):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    finally:
        mlflow.sklearn.autolog(disable=True)
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    return run.info.run_id, version.version


def test_autolog_register_alias_and_load_by_alias(inproc: InProc, inproc_user: Any) -> None:
    ann = inproc_user("ann")
    with as_user(inproc, ann) as client:
        run_id, version = train_and_register("iris", "iris")
        run = client.get_run(run_id)
        assert run.info.user_id == ann
        assert "training_score" in run.data.metrics and run.data.params["max_iter"] == "300"
        history = client.get_metric_history(run_id, "loss")
        assert [m.step for m in history] == [0, 1, 2, 3, 4]
        assert run.data.metrics["loss"] == pytest.approx(0.2)  # the last step's
        client.set_registered_model_alias("iris", "champion", version)
        model = mlflow.pyfunc.load_model("models:/iris@champion")
        from sklearn.datasets import load_iris

        x, y = load_iris(return_X_y=True)
        assert (model.predict(x[:50]) == y[:50]).mean() > 0.9
        found = mlflow.search_runs(experiment_names=["iris"], order_by=["metrics.loss ASC"])
        assert list(found["run_id"]) == [run_id]
    # the version's files were copied into the model's bucket: they outlive the run
    files = keys(inproc, f"{ann}-home", "mlflow/registry/")
    assert any(k.endswith("/1/MLmodel") for k in files), files
    http = inproc.http(ann)
    detail = http.get(
        f"{API}/api/2.0/mlflow/model-versions/get", params={"name": "iris", "version": 1}
    )
    assert detail.json()["model_version"]["aliases"] == ["champion"]


def test_another_user_sees_nothing_and_changes_nothing(inproc: InProc, inproc_user: Any) -> None:
    ann, bob = inproc_user("ann"), inproc_user("bob")
    with as_user(inproc, ann) as client:
        run_id, _ = train_and_register("secret", "private")
        exp_id = client.get_experiment_by_name("private").experiment_id
        client.set_registered_model_alias("secret", "champion", "1")
        model_id = client.get_run(run_id).outputs.model_outputs[0].model_id
    with as_user(inproc, bob) as client:
        missing = "RESOURCE_DOES_NOT_EXIST"
        refused(missing, client.get_experiment, exp_id)
        assert client.get_experiment_by_name("private") is None
        assert client.get_experiment_by_name(f"{ann}.private") is None
        refused(missing, client.get_run, run_id)
        refused(missing, client.get_metric_history, run_id, "loss")
        refused(missing, client.log_metric, run_id, "x", 1.0)
        refused(missing, client.set_tag, run_id, "x", "y")
        refused(missing, client.delete_run, run_id)
        refused(missing, client.search_runs, [exp_id])
        refused(missing, client.create_run, exp_id)
        refused(missing, client.get_logged_model, model_id)
        refused(missing, client.get_registered_model, "secret")
        refused(missing, client.get_model_version_by_alias, "secret", "champion")
        refused(missing, client.get_model_version_download_uri, "secret", "1")
        refused(missing, client.set_registered_model_alias, "secret", "x", "1")
        assert [e.name for e in client.search_experiments()] in ([], ["Default"])
        assert client.search_registered_models() == []
        assert client.search_model_versions("name='secret'") == []
        # nor through the artifacts: not downloaded, not listed, not registered as his own
        with pytest.raises(MlflowException):
            mlflow.artifacts.download_artifacts(f"runs:/{run_id}/estimator.html")
        client.create_registered_model("mine")
        refused(missing, client.create_model_version, "mine", f"models:/{model_id}", run_id)
        # the same names are free for him: names are per owner
        mlflow.set_experiment("private")
        assert client.get_experiment_by_name("private").experiment_id != exp_id
        client.create_registered_model("secret")
        # whoever the body says ran it, the run is his
        run = client.create_run(client.get_experiment_by_name("private").experiment_id)
        assert run.info.user_id == bob
    http = inproc.http(bob)
    for path in (
        f"{exp_id}/",
        f"{exp_id}/{run_id}/artifacts/estimator.html",
        "registry/1/1/MLmodel",
    ):
        got = http.get(f"{API}/api/2.0/mlflow-artifacts/artifacts/{path}")
        assert got.status_code == 404, (path, got.text)
        assert ann not in got.text
    put = http.put(f"{API}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/x.txt", content=b"x")
    assert put.status_code == 404
    listed = http.get(f"{API}/api/2.0/mlflow-artifacts/artifacts", params={"path": ""})
    assert listed.json() == {"files": []}
    # and the lake itself refuses his own keys there
    with pytest.raises(ClientError):
        user_s3(inproc, bob).list_objects_v2(Bucket=f"{ann}-home", Prefix="mlflow/")


def test_a_space_grants_read_and_write(inproc: InProc, inproc_user: Any) -> None:
    ann, reader, writer, other = (inproc_user(p) for p in ("ann", "rita", "will", "olga"))
    space = f"sp{ann[-5:]}"
    admin = inproc.admin_http()
    assert admin.post("/spaces", json={"name": space, "owner": ann}).is_success
    for name, access in ((reader, "read"), (writer, "write")):
        got = admin.put(f"/spaces/{space}/grants", json={"user": name, "access": access})
        assert got.is_success, got.text
    with as_user(inproc, ann) as client:
        exp_id = client.create_experiment(f"{space}.churn")
        run = client.create_run(exp_id)
        client.log_metric(run.info.run_id, "auc", 0.8)
        client.log_text(run.info.run_id, "hello", "notes.txt")
        client.set_terminated(run.info.run_id)
        client.create_registered_model(f"{space}.churn")
        client.create_model_version(f"{space}.churn", f"runs:/{run.info.run_id}", run.info.run_id)
        assert client.get_experiment(exp_id).name == f"{space}.churn"
    assert f"mlflow/{exp_id}/{run.info.run_id}/artifacts/notes.txt" in keys(
        inproc, f"space-{space}"
    )
    with as_user(inproc, reader) as client:
        assert client.get_experiment_by_name(f"{space}.churn").experiment_id == exp_id
        assert client.get_run(run.info.run_id).data.metrics == {"auc": 0.8}
        path = mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/notes.txt")
        with open(path) as f:
            assert f.read() == "hello"
        assert [m.name for m in client.search_registered_models()] == [f"{space}.churn"]
        assert "may read" in refused("PERMISSION_DENIED", client.create_run, exp_id)
        refused("PERMISSION_DENIED", client.log_metric, run.info.run_id, "auc", 0.1)
        refused("PERMISSION_DENIED", client.set_registered_model_alias, f"{space}.churn", "a", "1")
        refused("PERMISSION_DENIED", client.create_experiment, f"{space}.mine")
        refused("PERMISSION_DENIED", client.delete_registered_model, f"{space}.churn")
    with as_user(inproc, writer) as client:
        mine = client.create_run(exp_id)
        client.log_metric(mine.info.run_id, "auc", 0.9)
        client.log_text(mine.info.run_id, "by will", "notes.txt")
        client.set_registered_model_alias(f"{space}.churn", "champion", "1")
        assert mine.info.user_id == writer
    with as_user(inproc, other) as client:
        refused("RESOURCE_DOES_NOT_EXIST", client.get_experiment, exp_id)
        assert client.get_experiment_by_name(f"{space}.churn") is None
        # a space she cannot see is no owner to her: the name is her own, and the space untouched
        own = client.create_experiment(f"{space}.x")
        assert client.get_experiment(own).name == f"{space}.x"
    assert not [k for k in keys(inproc, f"space-{space}") if k.startswith(f"mlflow/{own}/")]
    with as_user(inproc, ann) as client:
        assert client.get_experiment_by_name(f"{space}.x") is None


def test_bad_input_is_refused_with_a_reason(inproc: InProc, inproc_user: Any) -> None:
    ann = inproc_user("ann")
    http = inproc.http(ann)
    base = f"{API}/api/2.0/mlflow"

    def post(path: str, **kw: Any) -> httpx.Response:
        return http.post(base + path, **kw)

    exp = post("/experiments/create", json={"name": "odd"}).json()["experiment_id"]
    run = post("/runs/create", json={"experiment_id": exp}).json()["run"]["info"]["run_id"]
    cases = [
        ("/experiments/create", {"content": b"{not json"}, 400, "not JSON"),
        ("/experiments/create", {"json": {}}, 400, "'name'"),
        ("/experiments/create", {"json": {"name": {"x": 1}}}, 400, "'name' must be a single"),
        ("/experiments/create", {"json": {"name": 2026}}, 200, ""),  # a number is its text
        ("/runs/log-batch", {"json": {"run_id": run, "metrics": "m"}}, 400, "list of objects"),
        ("/runs/log-batch", {"json": {"run_id": run, "tags": [1, 2]}}, 400, "list of objects"),
        ("/runs/search", {"json": {"experiment_ids": [{"id": 1}]}}, 400, "list of strings"),
        ("/experiments/create", {"json": {"name": "odd"}}, 409, "already exists"),
        (
            "/runs/log-metric",
            {"json": {"run_id": run, "key": "m", "value": "high"}},
            400,
            "numeric",
        ),
        ("/runs/log-metric", {"json": {"run_id": run, "key": "../x", "value": 1}}, 400, "invalid"),
        ("/runs/log-parameter", {"json": {"run_id": run, "key": "p", "value": "1"}}, 200, ""),
        (
            "/runs/log-parameter",
            {"json": {"run_id": run, "key": "p", "value": "2"}},
            400,
            "cannot change",
        ),
        ("/runs/update", {"json": {"run_id": run, "status": "DONE"}}, 400, "status must be"),
        (
            "/runs/search",
            {"json": {"experiment_ids": [exp], "filter": "metrics.m ~ 1"}},
            400,
            "filter",
        ),
        ("/runs/search", {"json": {"experiment_ids": [exp], "max_results": 0}}, 400, "max_results"),
        (
            "/runs/search",
            {"json": {"experiment_ids": [exp], "page_token": "zz"}},
            400,
            "page_token",
        ),
        ("/registered-models/create", {"json": {"name": "a/b"}}, 400, "'/'"),
        (
            "/model-versions/create",
            {"json": {"name": "x", "source": "s3://b/k"}},
            404,
            "does not exist",
        ),
    ]
    for path, kw, status, words in cases:
        got = post(path, **kw)
        assert got.status_code == status, (path, kw, got.text)
        if words:
            assert words in got.json()["message"], (path, got.text)
            assert got.json()["error_code"]
    post("/registered-models/create", json={"name": "m"})
    got = post("/model-versions/create", json={"name": "m", "source": "s3://bucket/key"})
    assert got.status_code == 400 and "cannot register" in got.json()["message"]
    # what was accepted before the bad input is still there
    runs = post("/runs/search", json={"experiment_ids": [exp]}).json()["runs"]
    assert runs[0]["data"]["params"] == [{"key": "p", "value": "1"}]


def test_deleted_runs_and_versions_leave_the_lake_after_the_grace_period(
    inproc: InProc, inproc_user: Any
) -> None:
    ann = inproc_user("ann")
    bucket = f"{ann}-home"
    grace = inproc.platform.settings.models_delete_grace
    with as_user(inproc, ann) as client:
        exp = client.create_experiment("tidy")
        kept, gone = client.create_run(exp), client.create_run(exp)
        for run in (kept, gone):
            client.log_text(run.info.run_id, "x" * 1000, "big.txt")
        client.create_registered_model("tidy")
        client.create_model_version("tidy", f"runs:/{kept.info.run_id}", kept.info.run_id)
        client.create_model_version("tidy", f"runs:/{kept.info.run_id}", kept.info.run_id)
        client.set_registered_model_alias("tidy", "champion", "2")
        client.delete_run(gone.info.run_id)
        client.delete_run(kept.info.run_id)
        client.restore_run(kept.info.run_id)  # restored within the grace period: kept whole
        client.delete_model_version("tidy", "2")
        dropped = client.create_experiment("dropped")
        inside = client.create_run(dropped)
        client.log_text(inside.info.run_id, "y", "y.txt")
        client.delete_experiment(dropped)
        logged = client.create_logged_model(exp, name="m")
        put = inproc.http(ann).put(
            f"{API}/api/2.0/mlflow-artifacts/artifacts/{exp}/models/{logged.model_id}/artifacts/w",
            content=b"w",
        )
        assert put.status_code == 200, put.text
        client.delete_logged_model(logged.model_id)
        before = keys(inproc, bucket)
        assert f"mlflow/{exp}/models/{logged.model_id}/artifacts/w" in before
        assert f"mlflow/{dropped}/{inside.info.run_id}/artifacts/y.txt" in before
        assert f"mlflow/{exp}/{gone.info.run_id}/artifacts/big.txt" in before
        assert any("/registry/" in k and k.endswith("/2/big.txt") for k in before)
        deadline = time.monotonic() + grace + 30
        while time.monotonic() < deadline:
            now = keys(inproc, bucket)
            if not any(
                gone.info.run_id in k
                or k.endswith("/2/big.txt")
                or k.startswith(f"mlflow/{dropped}/")
                or logged.model_id in k  # deleted last: due last
                for k in now
            ):
                break
            time.sleep(0.5)
        after = keys(inproc, bucket)
        assert not any(gone.info.run_id in k for k in after), after
        assert not any(k.endswith("/2/big.txt") for k in after), after
        assert f"mlflow/{exp}/{kept.info.run_id}/artifacts/big.txt" in after
        assert any(k.endswith("/1/big.txt") for k in after)
        assert not any(k.startswith(f"mlflow/{dropped}/") for k in after), after
        assert not any(logged.model_id in k for k in after), after
        refused("RESOURCE_DOES_NOT_EXIST", client.get_run, gone.info.run_id)
        refused("RESOURCE_DOES_NOT_EXIST", client.get_run, inside.info.run_id)
        refused("RESOURCE_DOES_NOT_EXIST", client.get_experiment, dropped)
        assert client.get_run(kept.info.run_id).info.lifecycle_stage == "active"
        # the alias that pointed at the deleted version went with it, and the history says so
        refused("RESOURCE_DOES_NOT_EXIST", client.get_model_version_by_alias, "tidy", "champion")


def lakehub_cli(inproc: InProc, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``lakehub ARGS`` as ``name``, in a process (``--hub``/``--token``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAKEHUB_", "MLFLOW_"))}
    argv = [sys.executable, "-m", "lakehub.cli", *args, "--hub", inproc.url, "--token"]
    return subprocess.run(
        [*argv, inproc.token(name)], capture_output=True, text=True, env=env, timeout=120
    )


def test_alias_history_rollback_and_lineage_through_sdk_and_cli(
    inproc: InProc, inproc_user: Any
) -> None:
    import lakehub
    import lakehub.models as models
    from lakehub.client import LakeHubError

    ann, bob = inproc_user("ann"), inproc_user("bob")
    with as_user(inproc, ann) as client:
        exp = client.create_experiment("lineage")
        run = client.create_run(exp, tags={"mlflow.source.name": "train.ipynb"})
        client.log_text(run.info.run_id, "weights", "model/w.txt")
        client.create_registered_model("scorer")
        for _ in range(2):
            client.create_model_version("scorer", f"runs:/{run.info.run_id}/model", run.info.run_id)
        client.set_registered_model_alias("scorer", "champion", "1")
        client.set_registered_model_alias("scorer", "champion", "2")
    with lakehub.connect(inproc.url, inproc.token(ann)) as c:
        assert [m["name"] for m in models.list(client=c)] == ["scorer"]
        detail = models.get("scorer", client=c)
        assert [v["version"] for v in detail["versions"]] == [2, 1]
        lineage = detail["versions"][0]["lineage"]
        assert lineage["run_id"] == run.info.run_id and lineage["code"] == "train.ipynb"
        assert detail["versions"][0]["size_bytes"] == len("weights")
        moves = [
            (e["old_version"], e["new_version"], e["action"], e["actor"])
            for e in models.history("scorer", "champion", client=c)
        ]
        assert moves == [(None, 1, "set", ann), (1, 2, "set", ann)]
        assert models.rollback("scorer", "champion", client=c) == 1
        assert models.get("scorer", client=c)["aliases"] == {"champion": 1}
        assert models.history("scorer", client=c)[-1]["action"] == "rollback"
    with lakehub.connect(inproc.url, inproc.token(bob)) as c:
        assert models.list(client=c) == []
        for call in (
            lambda: models.get("scorer", client=c),
            lambda: models.history(f"{ann}.scorer", client=c),
            lambda: models.rollback(f"{ann}.scorer", "champion", client=c),
        ):
            with pytest.raises(LakeHubError) as err:
                call()
            assert err.value.status == 404
    out = lakehub_cli(inproc, ann, "model", "history", "scorer")
    assert out.returncode == 0, out.stderr
    assert "@champion" in out.stdout and "rollback" in out.stdout
    out = lakehub_cli(inproc, ann, "model", "show", "scorer")
    assert "v2" in out.stdout and "code: train.ipynb" in out.stdout
    out = lakehub_cli(inproc, ann, "model", "rollback", "scorer", "nothing")
    assert out.returncode == 1 and "no earlier version" in out.stderr
    assert "Traceback" not in out.stderr
    out = lakehub_cli(inproc, bob, "model", "show", f"{ann}.scorer")
    assert out.returncode == 1 and "does not exist" in out.stderr


def test_a_version_names_the_datasets_environment_and_notebook_it_came_from(
    inproc: InProc, inproc_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    import lakehub
    import lakehub.datasets as datasets
    import lakehub.models as models

    ann = inproc_user("ann")
    # what a notebook server's kernel has in its environment
    monkeypatch.setenv("LAKEHUB_ENVIRONMENT", "datascience")
    monkeypatch.setenv("LAKEHUB_ENVIRONMENT_BUILD", "datascience-0123456789ab")
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/ann/churn/train.ipynb")
    with lakehub.connect(inproc.url, inproc.token(ann)) as c, as_user(inproc, ann) as client:
        sales = datasets.create("sales", pd.DataFrame({"x": [1, 2, 3]}), client=c)
        mlflow.set_experiment("churn")
        with mlflow.start_run() as run:
            assert len(datasets.get("sales", client=c).to_pandas()) == 3
            sales.head()  # the same dataset read twice is one input
        got = client.get_run(run.info.run_id)
        assert got.data.tags["lakehub.environment.build"] == "datascience-0123456789ab"
        assert got.data.tags["mlflow.source.name"] == "/home/ann/churn/train.ipynb"
        assert [d.dataset.name for d in got.inputs.dataset_inputs] == [f"{ann}/sales"]
        client.log_text(run.info.run_id, "w", "model/w.txt")
        client.create_registered_model("churn")
        client.create_model_version("churn", f"runs:/{run.info.run_id}/model", run.info.run_id)
        lineage = models.get("churn", client=c)["versions"][0]["lineage"]
    assert lineage["environment"] == "datascience"
    assert lineage["environment_build"] == "datascience-0123456789ab"
    assert lineage["code"] == "/home/ann/churn/train.ipynb"
    (read,) = lineage["datasets"]
    assert read["dataset"]["name"] == f"{ann}/sales"
    assert json.loads(read["dataset"]["source"])["row_count"] == 3


def test_artifacts_count_against_the_space_s_quota(
    inproc: InProc, full_quota: dict[str, str]
) -> None:
    owner, space = full_quota["owner"], full_quota["space"]
    with as_user(inproc, owner) as client:
        exp = client.create_experiment(f"{space}.over")
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "still", 1.0)  # metadata is not the lake's to refuse
        put = inproc.http(owner).put(
            f"{API}/api/2.0/mlflow-artifacts/artifacts/{exp}/{run.info.run_id}/artifacts/r.txt",
            content=b"x",
        )
        assert put.status_code == 403 and "quota exceeded" in put.json()["message"]
        with pytest.raises(Exception) as err:  # MLflow's client raises requests' HTTPError
            client.log_text(run.info.run_id, "x", "refused.txt")
        assert "403" in str(err.value) and "quota exceeded for space" in str(err.value)
        assert client.get_run(run.info.run_id).data.metrics == {"still": 1.0}
    assert keys(inproc, full_quota["bucket"]) == []


def test_a_space_s_retention_deletes_its_old_runs(inproc: InProc, inproc_user: Any) -> None:
    owner, writer = inproc_user("ret"), inproc_user("rw")
    space = f"keep{owner[-6:]}"  # never the owner's own name
    assert inproc.http(owner).post("/services/lakehub/api/spaces", json={"name": space}).is_success
    inproc.http(owner).put(
        f"/services/lakehub/api/spaces/{space}/grants", json={"user": writer, "access": "write"}
    )
    day = 86_400_000
    with as_user(inproc, owner) as client:
        exp = client.create_experiment(f"{space}.nightly")
        old = client.create_run(exp, start_time=int(time.time() * 1000) - 10 * day)
        running = client.create_run(exp, start_time=int(time.time() * 1000) - 10 * day)
        new = client.create_run(exp)
        for run in (old, new):
            client.log_text(run.info.run_id, "x", "x.txt")
            client.set_terminated(run.info.run_id)
    url = f"/services/lakehub/api/spaces/{space}/retention"
    refused_put = inproc.http(writer).put(url, json={"run_days": 7})
    assert refused_put.status_code == 403 and "only the owner" in refused_put.json()["detail"]
    assert inproc.http(owner).put(url, json={"run_days": 0}).status_code == 422
    assert inproc.http(owner).put(url, json={"run_days": 7}).json() == {"run_days": 7}
    assert inproc.http(writer).get(url).json() == {"run_days": 7}
    events = inproc.admin_http().get("/events").json()
    assert any(e["action"] == "space.retention" and e["target"] == space for e in events)
    deadline = time.monotonic() + inproc.platform.settings.models_delete_grace + 30
    while time.monotonic() < deadline:
        if not any(old.info.run_id in k for k in keys(inproc, f"space-{space}")):
            break
        time.sleep(0.5)
    left = keys(inproc, f"space-{space}")
    assert not any(old.info.run_id in k for k in left), left
    assert any(new.info.run_id in k for k in left), (new.info.run_id, left)
    with as_user(inproc, owner) as client:
        kept = {r.info.run_id for r in client.search_runs([exp])}
    assert kept == {new.info.run_id, running.info.run_id}  # a run still running is kept


def test_a_diverging_run_keeps_its_nan_and_infinite_values(
    inproc: InProc, inproc_user: Any
) -> None:
    import math

    ann = inproc_user("ann")
    with as_user(inproc, ann) as client:
        exp = client.create_experiment("diverging")
        run = client.create_run(exp).info.run_id
        for step, value in enumerate((1.0, 0.5, math.inf, math.nan)):
            client.log_metric(run, "loss", value, step=step)
        assert math.isnan(client.get_run(run).data.metrics["loss"])
        history = [m.value for m in client.get_metric_history(run, "loss")]
        assert history[:3] == [1.0, 0.5, math.inf] and math.isnan(history[3])
        # a search sorted by the metric still answers, the NaN run last
        other = client.create_run(exp).info.run_id
        client.log_metric(other, "loss", 0.1)
        found = client.search_runs([exp], order_by=["metrics.loss ASC"])
        assert [r.info.run_id for r in found] == [other, run]
    page = inproc.browser_login(ann).get(f"/services/lakehub/runs/{run}")
    assert page.status_code == 200 and ">nan<" in page.text.lower()
    assert '"y": [1.0, 0.5, null, null]' in page.text  # the chart leaves gaps
