"""What the model endpoint tests share (in-process layer, real replicas): the ``serving`` fixture
(the ``datascience`` environment built once per test run, shared with the hubs, for replicas that
run as each user's own account, like on a hub), a registered iris tree, waiting for a version to
serve, one OIP request."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inproc import InProc

API = "/services/lakehub"
READY = 180.0


@pytest.fixture(scope="module")
def serving(inproc: InProc) -> Iterator[InProc]:
    """The datascience environment built (or reused from this run's hubs) for replicas; after
    the module, the accounts its users' replicas and trainings ran as are removed again."""
    envs = inproc.platform.environments
    envs.sync_builtins()
    deadline = time.monotonic() + 900
    while envs.path("datascience") is None and time.monotonic() < deadline:
        if not envs.build_next(only="datascience"):
            time.sleep(1)
    assert envs.path("datascience") is not None, envs.log_text("datascience")[-3000:]
    yield inproc
    remove_accounts(inproc.platform.settings.homes_dir)


def remove_accounts(homes: Path) -> None:
    """Remove the ``lh-`` accounts whose homes are below ``homes`` (their processes stopped)."""
    import pwd

    from lakehub.server.notebooks.accounts import remove_account

    below = f"{homes}/"
    for pw in pwd.getpwall():
        if pw.pw_name.startswith("lh-") and pw.pw_dir.startswith(below):
            remove_account(pw.pw_name.removeprefix("lh-"))


def register(inproc: InProc, user: str, name: str, depth: int, alias: str = "champion") -> int:
    """A decision tree on iris (``depth`` tells versions apart), registered as ``name``, with
    ``alias`` on it; returns the version."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    os.environ["MLFLOW_TRACKING_URI"] = inproc.url + API + "/mlflow"
    os.environ["MLFLOW_TRACKING_TOKEN"] = inproc.token(user)
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    x, y = load_iris(return_X_y=True, as_frame=True)
    model = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(x, y)
    client = MlflowClient()
    exp = client.get_experiment_by_name("serving")
    exp_id = exp.experiment_id if exp else client.create_experiment("serving")
    # explicitly: mlflow.set_experiment would stay active for later tests in this process
    with mlflow.start_run(experiment_id=exp_id):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x, model.predict(x)),
            input_example=x.head(3),
            serialization_format="cloudpickle",
            registered_model_name=name,
        )
    version = int(info.registered_model_version)
    client.set_registered_model_alias(name, alias, str(version))
    return version


def wait_serving(c: httpx.Client, name: str, version: int, role: str = "main") -> dict[str, Any]:
    deadline = time.monotonic() + READY
    while time.monotonic() < deadline:
        ep = c.get(f"/services/lakehub/api/endpoints/{name}").json()
        served = ep["version"] if role == "main" else ep["canary_version"]
        if served == version:
            return dict(ep)
        failed = [r for r in ep["rollouts"] if r["state"] == "failed"]
        assert not failed, failed
        time.sleep(0.2)
    raise AssertionError(f"{name} did not serve version {version}: {ep}")


ROW = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [6.7, 3.0, 5.2, 2.3]}]}


def local_tree(depth: int) -> Any:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True)
    return DecisionTreeClassifier(max_depth=depth, random_state=0).fit(x, y)


MLFLOW_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_EXPERIMENT_ID")


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MLflow's client refuses at once (no retries); what ``register`` set for it (the hub's
    tracking URI, a user's token) is gone after the test, as if never set."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    before = {k: os.environ.get(k) for k in MLFLOW_VARIABLES}
    yield
    import mlflow

    mlflow.end_run()
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
