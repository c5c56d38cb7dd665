"""Model endpoints: a registered model version as an HTTP endpoint (the Open Inference Protocol
v2, and MLflow's ``/invocations``)::

    import lakehub.serving as serving
    ep = serving.deploy("churn@champion", replicas=2)      # waits until it serves
    serving.predict("churn", df)                           # a DataFrame (or rows) in, outputs out
    serving.update("churn", canary={"model": "churn@challenger", "share": 10})
    serving.update("churn", follow_alias=True)             # a move of @champion redeploys
    token = serving.new_token("churn", "billing app")     # for a program: shown once
    serving.undeploy("churn")

Names are yours (``churn``) or an owner's (``team.churn``: a space's). An endpoint's address is
``<hub>/services/lakehub/<path>`` (``path`` in its description); any OIP v2 client (Triton's,
KServe's) can call it with ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import builtins
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from lakehub.client import LakeHubError, default

if TYPE_CHECKING:
    from lakehub.client import Client

BASE = "/api/endpoints"


def _path(name: str) -> str:
    return f"{BASE}/{quote(name, safe='')}"


def list(client: Client | None = None) -> builtins.list[dict[str, Any]]:  # noqa: A001
    """The endpoints you can call."""
    found: builtins.list[dict[str, Any]] = default(client).request("GET", BASE)
    return found


def get(name: str, client: Client | None = None) -> dict[str, Any]:
    """An endpoint with its rollouts (newest first) and, if you may change it, its tokens."""
    out: dict[str, Any] = default(client).request("GET", _path(name))
    return out


def deploy(
    model: str,
    name: str | None = None,
    replicas: int = 1,
    size: str | None = None,
    follow_alias: bool = False,
    batching: bool = False,
    environment: str = "",
    wait: float = 300.0,
    client: Client | None = None,
) -> dict[str, Any]:
    """Deploy ``model`` (``name@alias``, ``name/N`` or ``name``: its latest version); waits up
    to ``wait`` seconds until it serves (0: not at all)."""
    body = {
        "model": model,
        "name": name,
        "replicas": replicas,
        "size": size,
        "follow_alias": follow_alias,
        "batching": batching,
        "environment": environment,
    }
    c = default(client)
    out: dict[str, Any] = c.request("POST", BASE, json=body)
    return _until(out["name"], lambda ep: ep["version"] is not None, wait, c) if wait else out


def update(
    name: str, wait: float = 300.0, client: Client | None = None, **changes: Any
) -> dict[str, Any]:
    """Change an endpoint: ``model``, ``replicas``, ``size``, ``follow_alias``, ``batching``,
    ``canary`` (``{"model": ..., "share": percent}``), ``canary_share``, ``clear_canary``;
    waits up to ``wait`` seconds for the rollout it starts."""
    c = default(client)
    out: dict[str, Any] = c.request("PATCH", _path(name), json=changes)

    def settled(ep: dict[str, Any]) -> bool:
        return bool(ep["rolling_out"] == 0)

    return _until(name, settled, wait, c) if wait else out


def undeploy(name: str, client: Client | None = None) -> None:
    """Stop the endpoint (requests in flight are answered first)."""
    default(client).request("DELETE", _path(name))


def new_token(name: str, label: str, client: Client | None = None) -> str:
    """An application token that opens this endpoint only; LakeHub keeps only its hash."""
    out = default(client).request("POST", _path(name) + "/tokens", json={"name": label})
    return str(out["token"])


def revoke_token(name: str, token_id: int, client: Client | None = None) -> None:
    default(client).request("DELETE", f"{_path(name)}/tokens/{token_id}")


def url(name: str, client: Client | None = None) -> str:
    """The endpoint's base URL (append ``/v2/models/<model>/infer``, ``/invocations``, ...)."""
    c = default(client)
    return f"{c.url}/{get(name, client=c)['path']}"


def predict(name: str, data: Any, client: Client | None = None) -> Any:
    """``data`` (a pandas DataFrame, or a list of rows) through MLflow's scoring protocol;
    returns the predictions as the model gives them (a list, or a list of records)."""
    c = default(client)
    ep = get(name, client=c)
    if hasattr(data, "to_dict"):
        body = {"dataframe_split": data.to_dict(orient="split", index=False)}
    else:
        body = {"instances": data}
    resp = c._http.post(f"{c.url}/{ep['path']}/invocations", json=body)
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("error", resp.text)
        except ValueError:
            detail = resp.text
        raise LakeHubError(resp.status_code, str(detail))
    return resp.json()["predictions"]


def _until(name: str, done: Any, wait: float, c: Client) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        ep = get(name, client=c)
        if done(ep):
            return ep
        failed = [r for r in ep["rollouts"] if r["state"] == "failed"]
        if failed and ep["rollouts"][0]["state"] == "failed":
            raise LakeHubError(500, f"endpoint {name}: {ep['message'] or failed[0]['message']}")
        if time.monotonic() > deadline:
            raise LakeHubError(
                504, f"endpoint {name} did not settle in {wait:.0f} s: {ep['status']}"
            )
        time.sleep(0.5)
