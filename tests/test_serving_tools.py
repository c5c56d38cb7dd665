"""Model endpoints from the CLI, the SDK and the portal (Chromium), and the AI library's ten
models deployed and one retrained on a dataset (in-process layer, real replicas)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from inproc import InProc

pytest.importorskip("mlflow")

from endpoints_kit import (
    API,
    READY,
    ROW,
    local_tree,
    register,
    wait_serving,
)

pytestmark = pytest.mark.usefixtures("mlflow_env")


def test_the_cli_and_the_sdk_deploy_call_and_undeploy(serving: InProc, inproc_user: Any) -> None:
    import subprocess

    import lakehub.serving as sdk
    from lakehub.client import LakeHubError, connect

    ann = inproc_user()
    version = register(serving, ann, "petals", depth=2)
    token = serving.token(ann)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lakehub.cli", *args, "--hub", serving.url, "--token", token],
            capture_output=True,
            text=True,
            timeout=300,
        )

    out = cli("model", "deploy", "petals@champion", "--replicas", "1")
    assert out.returncode == 0, out.stderr
    assert f"petals: serving v{version}" in out.stdout and "/serving/" in out.stdout
    listed = cli("endpoint", "ls")
    assert "petals" in listed.stdout and "1/1 serving" in listed.stdout
    made = cli("endpoint", "token", "petals", "reports")
    assert made.returncode == 0 and made.stdout.strip().startswith("lhe_")
    shown = cli("endpoint", "show", "petals")
    assert "token 1: reports lhe_" in shown.stdout and "deploy" in shown.stdout
    bad = cli("model", "deploy", "nosuch@champion")
    assert (
        bad.returncode == 1 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    )

    # the SDK, with the same user's token: predict a DataFrame through /invocations
    from sklearn.datasets import load_iris

    client = connect(serving.url, token)
    x, _ = load_iris(return_X_y=True, as_frame=True)
    assert sdk.predict("petals", x.head(4), client=client) == [
        int(v) for v in local_tree(2).predict(x.head(4).to_numpy())
    ]
    assert sdk.url("petals", client=client).endswith(f"/serving/{ann}/petals")
    ep = sdk.update("petals", replicas=2, client=client)
    assert ep["replicas"] == 2 and ep["ready_replicas"] == 2
    # the same endpoint for Kubernetes: KServe's InferenceService (checked in test_serving_kserve)
    isvc = client.request("GET", "/api/endpoints/petals/kserve", params={"namespace": "ml"})
    assert isvc["kind"] == "InferenceService" and isvc["metadata"]["namespace"] == "ml"
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == predictor["maxReplicas"] == 2
    uri = predictor["model"]["storageUri"]
    assert re.fullmatch(rf"s3://{ann}-home/mlflow/registry/\d+/{version}/", uri), uri
    with pytest.raises(LakeHubError) as err:
        sdk.deploy("petals/99", name="other", client=client)
    assert err.value.status == 404
    assert cli("endpoint", "undeploy", "petals").returncode == 0
    assert sdk.list(client=client) == []
    client.close()


def test_the_ai_library_deploys_its_ten_models_and_retrains_one(
    serving: InProc, inproc_user: Any
) -> None:
    import lakehub.datasets
    from lakehub.ailib import templates
    from lakehub.client import connect

    ann = inproc_user()
    c = serving.http(ann)
    lib = "/services/lakehub/api/ailib"
    listed = c.get(lib).json()
    assert [t["name"] for t in listed] == list(templates()) and len(listed) == 10
    for t in listed:
        r = c.post(f"{lib}/{t['name']}/deploy", json={})
        assert r.status_code == 202 and r.json()["state"] in ("queued", "training"), r.text
    assert c.post(f"{lib}/sentiment/deploy", json={}).status_code == 409  # one at a time
    assert c.post(f"{lib}/nosuch/deploy", json={}).status_code == 404
    deadline = time.monotonic() + 900
    while True:
        states = {t["name"]: t["training"] for t in c.get(lib).json()}
        assert not [t for t in states.values() if t["state"] == "failed"], states
        if all(t["state"] == "serving" for t in states.values()):
            break
        assert time.monotonic() < deadline, states
        time.sleep(1)
    auth = {"Authorization": f"Bearer {serving.token(ann)}"}
    for name, template in templates().items():
        ep = wait_serving(c, f"ailib-{name}", states[name]["version"])
        example = template.example()
        r = httpx.post(
            f"{serving.url}{API}/{ep['path']}/invocations",
            json={"dataframe_split": json.loads(example.to_json(orient="split", index=False))},
            headers=auth,
            timeout=30,
        )
        assert r.status_code == 200, (name, r.text)
        assert len(r.json()["predictions"]) == len(example), (name, r.json())

    # retrained on the user's own data: a new version, which names the dataset it read
    client = connect(serving.url, serving.token(ann))
    fraud = templates()["fraud-detection"]
    lakehub.datasets.create("card_payments", fraud.sample(400), client=client)
    r = c.post(f"{lib}/fraud-detection/deploy", json={"dataset": "card_payments"})
    assert r.status_code == 202
    deadline = time.monotonic() + 600
    while (t := c.get(lib).json()[5]["training"])["state"] != "serving":
        assert t["state"] != "failed" and time.monotonic() < deadline, t
        time.sleep(1)
    assert t["version"] == states["fraud-detection"]["version"] + 1
    wait_serving(c, "ailib-fraud-detection", t["version"])
    model = c.get("/services/lakehub/api/models/ailib-fraud-detection").json()
    newest = max(model["versions"], key=lambda v: v["version"])
    names = [(d.get("dataset") or d)["name"] for d in newest["lineage"]["datasets"]]
    assert names == [f"{ann}/card_payments"], newest["lineage"]
    # a dataset without the template's columns: a readable failure, the old version serving on
    r = c.post(f"{lib}/regression/deploy", json={"dataset": "card_payments"})
    assert r.status_code == 202
    deadline = time.monotonic() + 300
    while (t := c.get(lib).json()[7]["training"])["state"] not in ("failed", "serving"):
        assert time.monotonic() < deadline, t
        time.sleep(1)
    assert t["state"] == "failed" and "column" in t["message"], t
    for name in templates():
        c.delete(f"/services/lakehub/api/endpoints/ailib-{name}")
    client.close()


@pytest.mark.browser
def test_the_portal_deploys_tries_and_shows_a_token_once_in_chromium(
    serving: InProc, inproc_user: Any, browser: Any, artifacts: Any
) -> None:
    from lakehub.server.web.auth import TOKEN_COOKIE

    ann, eve = inproc_user(), inproc_user()
    version = register(serving, ann, "lilies", depth=2)
    shots = artifacts / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    portal = f"{serving.url}/services/lakehub/"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies(
        [
            {
                "name": TOKEN_COOKIE,
                "value": serving.platform.vault.encrypt(serving.token(ann)),
                "url": portal,
            }
        ]
    )
    page = context.new_page()
    try:
        page.goto(f"{portal}models/lilies")
        page.click("#deploy-link")
        assert page.input_value("#model") == "lilies@champion"
        page.fill("#name", "Bad Name")  # refused: the form keeps what was typed
        page.click("#deploy-button")
        assert "lowercase" in page.inner_text(".error")
        assert page.input_value("#model") == "lilies@champion"
        assert page.input_value("#name") == "Bad Name"
        page.fill("#name", "lilies")
        page.click("#deploy-button")
        page.wait_for_selector("#status")
        deadline = time.monotonic() + READY
        while "serving" not in page.inner_text("#status"):
            assert time.monotonic() < deadline
            page.wait_for_timeout(500)
            page.reload()
        assert page.input_value("#request").strip().startswith("{")  # the input example
        page.click("#send")
        answer = json.loads(page.inner_text("#answer"))
        assert answer["model_version"] == str(version) and answer["outputs"][0]["name"] == "predict"
        page.screenshot(path=str(shots / "64-endpoint-try-it.png"), full_page=True)
        page.fill("#token-form input[name=label]", "dashboard")
        page.click("#token-form button")
        token = page.inner_text("#new-token code")
        assert token.startswith("lhe_") and token not in page.url
        page.reload()  # shown once: the page shows its first characters only
        assert token not in page.content() and token[:8] in page.inner_text("#tokens")
        r = httpx.post(
            f"{serving.url}{API}/serving/{ann}/lilies/v2/models/lilies/infer",
            json=ROW,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200
        page.goto(f"{portal}ai-library")
        assert page.locator("#templates tr[data-template]").count() == 10
        page.screenshot(path=str(shots / "65-ai-library.png"), full_page=True)
        page.goto(f"{portal}endpoints")
        page.screenshot(path=str(shots / "66-endpoints.png"), full_page=True)
    finally:
        context.close()
    # another user sees none of it
    other = serving.browser_login(eve)
    assert "lilies" not in other.get("/services/lakehub/endpoints").text
    assert other.get("/services/lakehub/endpoints/lilies").status_code == 404
    serving.http(ann).delete("/services/lakehub/api/endpoints/lilies")
