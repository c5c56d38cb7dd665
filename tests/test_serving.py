"""Model endpoints (in-process layer, real replicas): a registered version deployed and called
through the Open Inference Protocol by independent clients (Triton's, KServe's), MLflow's
``/invocations``; its figures and its sample of requests in the lake; redeploys and a canary
promotion under continuous load with no failed request; who may call (owner, a space's grantee,
a stranger, application tokens, anonymous); bad input."""

from __future__ import annotations

import contextlib
import html
import json
import os
import pwd
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from inproc import InProc
from lakehub.client import tls_context

pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402

from endpoints_kit import (
    API,
    READY,
    ROW,
    local_tree,
    register,
    wait_serving,
)

pytestmark = pytest.mark.usefixtures("mlflow_env")


def test_a_version_deployed_and_called_by_triton_and_kserve_clients(
    serving: InProc, inproc_user: Any
) -> None:
    import tritonclient.http as triton
    from kserve import InferenceRESTClient, RESTConfig
    from sklearn.datasets import load_iris

    ann = inproc_user()
    version = register(serving, ann, "iris", depth=3)
    c = serving.http(ann)
    r = c.post("/services/lakehub/api/endpoints", json={"model": "iris@champion", "replicas": 2})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "deploying" and r.json()["rolling_out"] == 1
    ep = wait_serving(c, "iris", version)
    assert ep["ready_replicas"] == 2 and ep["status"] == "serving"
    base = f"{serving.url}{API}/{ep['path']}"
    auth = {"Authorization": f"Bearer {serving.token(ann)}"}

    x, _ = load_iris(return_X_y=True)
    expected = [int(v) for v in local_tree(3).predict(x[:5])]
    url = base.removeprefix("http://")
    for binary in (False, True):
        client = triton.InferenceServerClient(url=url)
        assert client.is_server_live(headers=dict(auth))
        assert client.is_server_ready(headers=dict(auth))
        assert client.is_model_ready("iris", headers=dict(auth))
        meta = client.get_model_metadata("iris", headers=dict(auth))
        assert meta["versions"] == [str(version)] and len(meta["inputs"]) == 4
        inp = triton.InferInput("input-0", [5, 4], "FP64")
        inp.set_data_from_numpy(x[:5].astype(np.float64), binary_data=binary)
        out = triton.InferRequestedOutput("predict", binary_data=binary)
        got = client.infer("iris", [inp], outputs=[out], request_id="req-7", headers=dict(auth))
        assert got.as_numpy("predict").tolist() == expected
        assert got.get_response()["id"] == "req-7"
        client.close()

    kclient = InferenceRESTClient(RESTConfig(protocol="v2", verbose=False))
    import asyncio

    async def kserve_calls() -> tuple[bool, Any]:
        ready = await kclient.is_server_ready(base, headers=dict(auth))
        res = await kclient.infer(base, ROW, model_name="iris", headers=dict(auth))
        await kclient.close()
        return ready, res

    ready, res = asyncio.run(kserve_calls())
    assert ready is True
    assert res.outputs[0].data == [int(local_tree(3).predict(np.array([[6.7, 3.0, 5.2, 2.3]]))[0])]

    # MLflow's scoring protocol, for existing callers
    cols = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    r = httpx.post(
        f"{base}/invocations",
        json={"dataframe_split": {"columns": cols, "data": x[:5].tolist()}},
        headers=auth,
    )
    assert r.status_code == 200 and r.json() == {"predictions": expected}
    # the protocol's errors: {"error": ...} with 400 / 404
    bad = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}
    r = httpx.post(f"{base}/v2/models/iris/infer", json=bad, headers=dict(auth))
    assert r.status_code == 400 and "columns" in r.json()["error"]
    r = httpx.post(f"{base}/v2/models/nosuch/infer", json=ROW, headers=dict(auth))
    assert r.status_code == 404 and "nosuch" in r.json()["error"]
    r = httpx.post(f"{base}/v2/models/iris/infer", content=b"{not json", headers=dict(auth))
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = httpx.get(f"{base}/v2/models/iris/versions/99", headers=dict(auth))
    assert r.status_code == 404 and "error" in r.json()
    # its figures, in Prometheus text: to its readers, and on the hub's page for operators
    text = c.get("/services/lakehub/api/endpoints/iris/metrics").text
    ok = re.search(
        rf'lakehub_endpoint_requests_total{{code="200",endpoint="{ann}/iris",user="{ann}"}} (\S+)',
        text,
    )
    assert ok and float(ok.group(1)) >= 8, text
    who = f'endpoint="{ann}/iris"'
    assert f'lakehub_endpoint_requests_total{{code="400",{who},user="{ann}"}}' in text
    assert re.search(rf'request_duration_seconds_count{{{who},user="{ann}"}} (\d+)', text)
    assert f'lakehub_endpoint_replicas_ready{{{who},role="main",user="{ann}"}} 2.0' in text
    hub_page = serving.admin_http().get(f"{serving.url}/services/lakehub/metrics").text
    assert f'endpoint="{ann}/iris"' in hub_page
    # a sample of requests and answers, in the lake as a catalogued dataset, by day
    import lakehub.datasets
    from lakehub.client import LakeHubError, connect

    client = connect(serving.url, serving.token(ann))
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(LakeHubError):  # not written yet (every 10 s)
            rows = lakehub.datasets.get("iris-requests", client=client).to_pandas()
            if len(rows) >= 7:  # every infer and invocation above (2 + 1 + 1 + 3 refused)
                break
        assert time.monotonic() < deadline, "no sample of requests in the lake"
        time.sleep(1)
    assert set(rows.columns) >= {"time", "version", "status", "latency_ms", "request", "answer"}
    assert (rows["version"] == version).all() and 200 in set(rows["status"])
    assert any('"req-7"' in r for r in rows["request"])
    assert rows["date"].astype(str).str.match(r"\d{4}-\d{2}-\d{2}").all()
    client.close()
    assert c.delete("/services/lakehub/api/endpoints/iris").status_code == 204
    gone = httpx.post(f"{base}/v2/models/iris/infer", json=ROW, headers=dict(auth))
    assert gone.status_code == 404


PACE = 0.02  # seconds between one client's requests: about 100 a second from two clients


class Load:
    """Clients calling an endpoint every ``PACE`` seconds, recording every answer's status and
    version: dense enough that a switch refusing requests for a moment is caught, paced so that
    the load does not take the cores the new replicas start on (unpaced: 11,000 calls and twice
    the CPU in this process for the same test)."""

    def __init__(self, url: str, token: str, clients: int = 2) -> None:
        self.url, self.token = url, token
        self.answers: list[tuple[int, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(timeout=30, verify=tls_context()) as c:
            deadline = time.monotonic() + 600
            while not self._stop.wait(PACE) and time.monotonic() < deadline:
                try:
                    r = c.post(self.url, json=ROW, headers=headers)
                    self.answers.append((r.status_code, r.headers.get("x-lakehub-version", "")))
                except httpx.HTTPError as err:
                    self.errors.append(repr(err))

    def since(self, n: int) -> list[tuple[int, str]]:
        return self.answers[n:]


def test_redeploys_and_a_canary_promotion_lose_no_request(
    serving: InProc, inproc_user: Any
) -> None:
    ann = inproc_user()
    v1 = register(serving, ann, "flowers", depth=1)
    c = serving.http(ann)
    assert c.post(
        "/services/lakehub/api/endpoints", json={"model": "flowers@champion", "follow_alias": True}
    ).is_success
    ep = wait_serving(c, "flowers", v1)
    url = f"{serving.url}{API}/{ep['path']}/v2/models/flowers/infer"
    with Load(url, serving.token(ann)) as load:
        time.sleep(1)
        # a new version by alias move (the endpoint follows champion)
        v2 = register(serving, ann, "flowers", depth=2)
        wait_serving(c, "flowers", v2)
        time.sleep(1)
        mark = len(load.answers)
        time.sleep(1)
        assert {v for _, v in load.since(mark)} == {str(v2)}
        # a canary of a challenger, getting half the requests, then promoted by the alias
        v3 = register(serving, ann, "flowers", depth=3, alias="challenger")
        r = c.patch(
            "/services/lakehub/api/endpoints/flowers",
            json={"canary": {"model": "flowers@challenger", "share": 50}},
        )
        assert r.is_success, r.text
        wait_serving(c, "flowers", v3, role="canary")
        mark = len(load.answers)
        time.sleep(1.5)
        seen = [v for _, v in load.since(mark)]
        assert seen.count(str(v3)) > len(seen) / 4 and seen.count(str(v2)) > len(seen) / 4
        MlflowClient().set_registered_model_alias("flowers", "champion", str(v3))
        wait_serving(c, "flowers", v3)
        assert c.patch(
            "/services/lakehub/api/endpoints/flowers", json={"clear_canary": True}
        ).is_success
        time.sleep(1)
    statuses = {s for s, _ in load.answers}
    assert load.errors == [] and statuses == {200}, (load.errors[:3], statuses)
    assert {v for _, v in load.answers} <= {str(v1), str(v2), str(v3)}
    assert len(load.answers) > 100
    detail = c.get("/services/lakehub/api/endpoints/flowers").json()
    reasons = [r["reason"] for r in detail["rollouts"]]
    assert "alias moved" in reasons and "canary" in reasons
    c.delete("/services/lakehub/api/endpoints/flowers")


def test_who_may_call_an_endpoint(serving: InProc, inproc_user: Any) -> None:
    ann, bob, eve = inproc_user(), inproc_user(), inproc_user()
    admin = serving.admin_http()
    space = f"sv{ann[-5:]}"
    assert admin.post("/spaces", json={"name": space, "owner": ann}).is_success
    assert admin.put(f"/spaces/{space}/grants", json={"user": bob, "access": "read"}).is_success
    version = register(serving, ann, f"{space}.wine", depth=2)
    c = serving.http(ann)
    r = c.post(
        "/services/lakehub/api/endpoints",
        json={"model": f"{space}.wine@champion", "name": f"{space}.wine"},
    )
    assert r.status_code == 201, r.text
    ep = wait_serving(c, f"{space}.wine", version)
    assert ep["path"] == f"serving/{space}/wine"
    url = f"{serving.url}{API}/{ep['path']}/v2/models/wine/infer"

    def call(token: str | None) -> int:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.post(url, json=ROW, headers=headers, verify=tls_context()).status_code

    token = c.post(
        f"/services/lakehub/api/endpoints/{space}.wine/tokens", json={"name": "app"}
    ).json()
    assert token["token"].startswith("lhe_") and token["hint"].endswith("...")
    listed = c.get(f"/services/lakehub/api/endpoints/{space}.wine").json()["tokens"]
    assert [t["name"] for t in listed] == ["app"] and "token" not in listed[0]
    assert call(serving.token(ann)) == 200  # the owner
    assert call(serving.token(bob)) == 200  # a reader of the space
    assert call(serving.token(eve)) == 404  # a stranger: as if it did not exist
    assert call(token["token"]) == 200  # its application token
    assert call(None) == 401  # anonymous
    assert call("lhe_" + "x" * 43) == 401  # a made-up token
    # a reader may call but not change it, nor make tokens; a stranger sees nothing
    b = serving.http(bob)
    assert b.get(f"/services/lakehub/api/endpoints/{space}.wine").json()["tokens"] == []
    assert (
        b.patch(f"/services/lakehub/api/endpoints/{space}.wine", json={"replicas": 2}).status_code
        == 403
    )
    assert (
        b.post(
            f"/services/lakehub/api/endpoints/{space}.wine/tokens", json={"name": "x"}
        ).status_code
        == 403
    )
    e = serving.http(eve)
    for path in ("", "/metrics", "/kserve"):  # its figures and its manifest are not seen either
        r = e.get(f"/services/lakehub/api/endpoints/{space}.wine{path}")
        assert r.status_code == 404 and "does not exist" in r.text, (path, r.text)
        assert b.get(f"/services/lakehub/api/endpoints/{space}.wine{path}").is_success, path
    page = f"{API}/endpoints/{space}.wine"
    r = serving.browser_login(eve).post(f"{page}/try", data={"body": json.dumps(ROW)})
    assert r.status_code == 404 and 'id="answer"' not in r.text  # nor tried from the portal
    r = serving.browser_login(bob).post(f"{page}/try", data={"body": json.dumps(ROW)})
    answer = re.search(r'<pre id="answer">(.*?)</pre>', r.text, re.S)
    assert r.status_code == 200 and answer is not None, r.text[-2000:]
    assert json.loads(html.unescape(answer.group(1)))["outputs"][0]["data"] == [2]
    assert all(
        x["name"] != f"{space}.wine" for x in e.get("/services/lakehub/api/endpoints").json()
    )
    # revoked: refused from the next request; the grant taken back: refused too
    assert (
        c.delete(f"/services/lakehub/api/endpoints/{space}.wine/tokens/{token['id']}").status_code
        == 204
    )
    assert call(token["token"]) == 401
    assert admin.delete(f"/spaces/{space}/grants", params={"user": bob}).status_code == 204
    assert call(serving.token(bob)) == 404
    c.delete(f"/services/lakehub/api/endpoints/{space}.wine")


def test_bad_deploys_are_refused_and_a_broken_version_never_serves(
    serving: InProc, inproc_user: Any
) -> None:
    ann = inproc_user()
    c = serving.http(ann)
    r = c.post("/services/lakehub/api/endpoints", json={"model": "nosuch@champion"})
    assert r.status_code == 404 and "nosuch" in r.json()["detail"]
    version = register(serving, ann, "blooms", depth=2)
    r = c.post("/services/lakehub/api/endpoints", json={"model": "blooms", "name": "Not_A_Name"})
    assert r.status_code == 400 and "lowercase" in r.json()["detail"]
    r = c.post("/services/lakehub/api/endpoints", json={"model": "blooms", "size": "enormous"})
    assert r.status_code == 403 and "enormous" in r.json()["detail"]
    assert (
        c.post(
            "/services/lakehub/api/endpoints", json={"model": "blooms", "replicas": 0}
        ).status_code
        == 422
    )
    assert c.post("/services/lakehub/api/endpoints", json={"model": "blooms"}).status_code == 201
    assert c.post("/services/lakehub/api/endpoints", json={"model": "blooms"}).status_code == 409
    wait_serving(c, "blooms", version)
    # a version whose files cannot load: its rollout fails, the old version keeps serving
    client = MlflowClient()
    run = client.create_run(client.get_experiment_by_name("serving").experiment_id)
    client.log_text(
        run.info.run_id, "flavors: {python_function: {loader_module: nosuch}}", "m/MLmodel"
    )
    broken = client.create_model_version("blooms", f"runs:/{run.info.run_id}/m", run.info.run_id)
    r = c.patch(
        "/services/lakehub/api/endpoints/blooms", json={"model": f"blooms/{broken.version}"}
    )
    assert r.is_success
    deadline = time.monotonic() + READY
    while True:
        ep = c.get("/services/lakehub/api/endpoints/blooms").json()
        if ep["rollouts"][0]["state"] == "failed":
            break
        assert time.monotonic() < deadline, ep
        time.sleep(0.2)
    assert ep["version"] == version and ep["status"] == "serving"
    assert f"version {broken.version} was not deployed" in ep["message"]
    url = f"{serving.url}{API}/{ep['path']}/v2/models/blooms/infer"
    r = httpx.post(url, json=ROW, headers={"Authorization": f"Bearer {serving.token(ann)}"})
    assert r.status_code == 200 and r.headers["x-lakehub-version"] == str(version)
    c.delete("/services/lakehub/api/endpoints/blooms")
    # refused while planned (here: the replicas' files folder cannot be made): the endpoint
    # says why instead of staying "deploying"
    files = serving.data_dir / "serving"
    aside = files.with_name("serving-aside")
    files.rename(aside)
    try:
        files.write_text("in the way")
        r = c.post("/services/lakehub/api/endpoints", json={"model": "blooms", "name": "wilted"})
        assert r.status_code == 201
        deadline = time.monotonic() + READY
        while (ep := c.get(f"{API}/api/endpoints/wilted").json())["status"] != "failed":
            assert time.monotonic() < deadline, ep
            time.sleep(0.2)
        assert "was not deployed: " in ep["message"] and "serving" in ep["message"], ep
    finally:
        files.unlink()
        aside.rename(files)
    c.delete("/services/lakehub/api/endpoints/wilted")


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_a_removed_user_s_endpoints_stop_with_them(
    serving: InProc, inproc_user: Any, tmp_path: Path
) -> None:
    ann = inproc_user()
    version = register(serving, ann, "tulips", depth=1)
    # a link ann planted in her home, where the model files once went: the hub, root, writing
    # or handing over files through it would reach a folder ann may not write
    target = tmp_path / "not-anns"
    target.mkdir(mode=0o755)
    home = serving.platform.settings.homes_dir / ann
    (home / ".lakehub").mkdir(parents=True, exist_ok=True)
    (home / ".lakehub" / "serving").symlink_to(target)
    c = serving.http(ann)
    assert c.post("/services/lakehub/api/endpoints", json={"model": "tulips"}).status_code == 201
    ep = wait_serving(c, "tulips", version)
    assert list(target.iterdir()) == [] and target.stat().st_uid == os.geteuid()
    route = serving.platform.serving.route(ann, "tulips")
    assert route is not None
    pids = [b.replica.pid for b in route.pool.backends]
    assert pids and all(_running(p) for p in pids)
    files = Path(os.readlink(f"/proc/{pids[0]}/cwd"))  # the version's files, ann's alone
    assert (files / "MLmodel").is_file() and not files.is_relative_to(home)
    assert files.stat().st_mode & 0o077 == 0
    for pid in pids:  # forked from the environment's warm starter, then became ann's account
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert b"lakehub.server.notebooks.warm" in Path(f"/proc/{ppid}/cmdline").read_bytes()
        if os.geteuid() == 0:
            uid = pwd.getpwnam(f"lh-{ann}").pw_uid
            assert Path(f"/proc/{pid}").stat().st_uid == uid == files.stat().st_uid
    assert serving.admin_http().delete(f"/users/{ann}").status_code == 204
    assert serving.platform.serving.route(ann, "tulips") is None
    r = httpx.post(f"{serving.url}{API}/{ep['path']}/v2/models/tulips/infer", json=ROW)
    assert r.status_code == 404
    deadline = time.monotonic() + 30
    while any(_running(p) for p in pids) or files.exists():  # and their files gone
        assert time.monotonic() < deadline, "a removed user's replica (or its files) stays"
        time.sleep(0.2)
