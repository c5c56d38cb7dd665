"""Per-user Dask clusters through the hub's dask-gateway: the SDK, the API, a notebook, limits."""

from __future__ import annotations

import asyncio
import io
import os
import pwd
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import cloudpickle
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import KilledWorker
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import lakehub
import lakehub.compute
from conftest import Hub
from kernel import Kernel
from lakehub.client import Client, LakeHubError

# the functions below travel to the workers by value (the cluster has no copy of this file):
# distributed pickles by reference when it can, so they are sent wrapped in a lambda
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def sdk(hub: Hub, name: str) -> Client:
    return lakehub.connect(hub.url, hub.token(name))


def _sum_and_write(bucket: str) -> int:
    """Runs on a worker, with the credentials the cluster got (none are passed here)."""
    import pandas as pd

    df = pd.read_parquet(f"s3://{bucket}/in/data.parquet")
    total = int(df["x"].sum())
    pd.DataFrame({"total": [total]}).to_parquet(f"s3://{bucket}/out/total.parquet")
    return total


def _log_run() -> str:
    """Runs on a worker: logs to MLflow as the cluster's owner, with what the cluster got."""
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_metric("from_worker", 1.0)
    return str(run.info.run_id)


def _read(bucket: str, key: str) -> bytes:
    import boto3

    body: bytes = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _slow(i: int) -> int:
    time.sleep(0.5)
    return i * i


def _hold(mib: int) -> int:
    """Runs on a worker: holds ``mib`` MiB (every page touched) for a while."""
    import numpy as np

    block = np.ones(mib << 20, dtype=np.uint8)
    time.sleep(10)
    return int(block[-1])


def _blas_threads() -> list[int]:
    import threadpoolctl

    return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]


def _gateway_pid(hub: Hub) -> int:
    return int(hub.runtime()["components"]["gateway"]["pid"] or 0)  # 0: being restarted


@pytest.fixture(scope="module")
def dask_ready(hub: Hub) -> Hub:
    hub.wait_environments("dask")
    return hub


def test_a_cluster_runs_as_its_owner_on_their_data_and_nobody_else_reaches_it(
    dask_ready: Hub, new_user
) -> None:
    hub = dask_ready
    alice, bob = new_user("dka"), new_user("dkb")
    a_bucket = f"{alice}-home"
    buf = io.BytesIO()
    pq.write_table(pa.table({"x": list(range(1000))}), buf)
    with sdk(hub, alice) as a, sdk(hub, bob) as b:
        a.lake.credentials().boto3_client().put_object(
            Bucket=a_bucket, Key="in/data.parquet", Body=buf.getvalue()
        )
        client = lakehub.compute.dask(workers=2, client=a)
        try:
            client.wait_for_workers(2, timeout=60)
            name = client.cluster.name
            if os.geteuid() == 0:  # scheduler and workers run as alice's account
                uid = pwd.getpwnam(f"lh-{alice}").pw_uid
                assert set(client.run(os.getuid).values()) == {uid}
                assert client.run_on_scheduler(os.getuid) == uid
                # at a notebook's priority, not at the (niced) gateway's
                assert set(client.run(lambda: os.getpriority(os.PRIO_PROCESS, 0)).values()) == {0}
                assert client.run_on_scheduler(lambda: os.getpriority(os.PRIO_PROCESS, 0)) == 0
            # the scheduler was forked from the dask environment's warm starter, and read its
            # settings from its own environment (the idle timeout the gateway gave it)
            starter = Path(f"/proc/{client.run_on_scheduler(os.getppid)}/cmdline").read_bytes()
            assert b"lakehub.server.notebooks.warm\0" in starter and starter.endswith(b"dask\0")
            idle = client.run_on_scheduler(
                lambda: __import__("dask").config.get("distributed.scheduler.idle-timeout")
            )
            assert idle == "1800s"  # compute_idle_timeout's default (dask's own: none)
            # temporary files (spilled data) in the cluster's own directory, not the machine's
            # /tmp; removed with the cluster
            scratch = {
                Path(d)
                for d in client.run(lambda dask_worker: dask_worker.local_directory).values()
            }
            scratch |= {Path(d) for d in client.run(__import__("tempfile").gettempdir).values()}
            scratch.add(Path(client.run_on_scheduler(__import__("tempfile").gettempdir)))
            assert all(d.is_relative_to(hub.data_dir) and name in str(d) for d in scratch), scratch
            total = client.submit(lambda b: _sum_and_write(b), a_bucket).result(timeout=60)
            assert total == sum(range(1000))
            out = (
                a.lake.credentials()
                .boto3_client()
                .get_object(Bucket=a_bucket, Key="out/total.parquet")["Body"]
                .read()
            )
            assert pq.read_table(io.BytesIO(out)).column("total").to_pylist() == [499500]
            # the workers log to MLflow as alice, and only she reads the run
            run_id = client.submit(lambda: _log_run()).result(timeout=120)
            tracking = MlflowClient(tracking_uri=f"{hub.url}/services/lakehub/mlflow")
            os.environ["MLFLOW_TRACKING_TOKEN"] = hub.token(alice)
            try:
                assert tracking.get_run(run_id).info.user_id == alice
                os.environ["MLFLOW_TRACKING_TOKEN"] = hub.token(bob)
                with pytest.raises(MlflowException):
                    tracking.get_run(run_id)
            finally:
                os.environ.pop("MLFLOW_TRACKING_TOKEN", None)

            # listed for alice, with a dashboard only she is sent to; not for bob
            mine = lakehub.compute.clusters(client=a)
            assert [(c["kind"], c["name"], c["status"]) for c in mine] == [
                ("dask", name, "running")
            ]
            assert mine[0]["dashboard_url"].endswith(f"/clusters/{name}/status")
            assert lakehub.compute.clusters(client=b) == []
            with pytest.raises(LakeHubError) as refused:
                lakehub.compute.stop("dask", name, client=b)
            assert refused.value.status == 404
            from dask_gateway import Gateway
            from dask_gateway.auth import JupyterHubAuth

            auth = JupyterHubAuth(api_token=hub.token(bob))
            with (
                Gateway(f"{hub.url}/services/dask-gateway", auth=auth) as theirs,
                pytest.raises(Exception, match="not found|404|403"),
            ):
                theirs.connect(name)

            # a worker killed in the middle of a job: the job still completes
            futures = client.map(lambda i: _slow(i), range(12))
            time.sleep(1.0)
            victim = next(iter(client.run(os.getpid).values()))
            os.kill(victim, signal.SIGKILL)
            assert sum(client.gather(futures)) == sum(i * i for i in range(12))

            # bob's own cluster cannot read alice's bucket
            bob_client = lakehub.compute.dask(workers=1, client=b)
            try:
                with pytest.raises(Exception, match="Forbidden|AccessDenied|403|denied"):
                    bob_client.submit(lambda b: _read(b, "in/data.parquet"), a_bucket).result(
                        timeout=60
                    )
            finally:
                bob_client.cluster.shutdown()
                bob_client.close()
        finally:
            client.close()
        lakehub.compute.stop("dask", name, client=a)
        hub.wait(lambda: lakehub.compute.clusters(client=a) == [], 30, "the cluster to stop")
        hub.wait(lambda: not any(d.exists() for d in scratch), 30, "its files to be removed")


def test_limits_are_checked_before_a_cluster_starts(dask_ready: Hub, new_user) -> None:
    hub = dask_ready
    name = new_user("dkl")
    admin = hub.admin_http()
    admin.put(f"/notebook-policies/user/{name}", json={"max_memory": 1536 << 20}).raise_for_status()
    with sdk(hub, name) as c:
        with pytest.raises(LakeHubError) as quota:
            lakehub.compute.dask(workers=1, memory="2 GiB", client=c)
        assert quota.value.status == 403
        assert "memory quota of 1.5 GiB" in quota.value.detail
        with pytest.raises(LakeHubError) as cores:
            lakehub.compute.dask(workers=1, cores=64, memory="512 MiB", client=c)
        assert cores.value.status in (400, 422) and "worker_cores" in cores.value.detail
        assert lakehub.compute.clusters(client=c) == []
        # what fits: a 512 MiB scheduler and 512 MiB workers under 1.5 GiB: at most 2 workers
        client = lakehub.compute.dask(workers=1, memory="512 MiB", client=c)
        try:
            # the worker (forked from its nanny) has numpy's BLAS on one thread, as a spawned
            # one would; a task that takes more than the worker's memory gets it restarted
            # by the nanny, each try, until the task is given up
            threads = client.run(lambda: _blas_threads())
            assert threads and all(set(t) == {1} for t in threads.values()), threads
            first = set(client.run(os.getpid).values())
            with pytest.raises(KilledWorker):
                client.submit(lambda: _hold(640), pure=False).result(timeout=120)
            client.wait_for_workers(1, timeout=30)
            assert set(client.run(os.getpid).values()).isdisjoint(first)
            with pytest.warns(Warning, match="exceed resource limit of 2 workers"):
                client.cluster.scale(5)
        finally:
            client.cluster.shutdown()
            client.close()


# After the gateway is killed, a socket of the client libraries (distributed's or dask-gateway's
# connection through the gateway's proxy) is collected unclosed; not traced to its maker yet
# (PYTHONTRACEMALLOC=25 shows it), so only this test forgives it.
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
def test_clusters_survive_a_gateway_restart_and_idle_ones_are_reclaimed(
    dask_ready: Hub, new_user
) -> None:
    """One cluster computes before and after the gateway is killed; another, left idle from the
    start, is reclaimed on its idle timeout meanwhile (the scheduler keeps the idle clock: no
    gateway restart resets it)."""
    hub = dask_ready
    name = new_user("dkr")
    with sdk(hub, name) as c:
        client = lakehub.compute.dask(workers=1, idle_timeout=600, client=c)
        cluster = client.cluster.name
        body = {"workers": 0, "idle_timeout": 15}  # started, and never connected to
        idle_name = c.request("POST", "/api/compute/dask", json=body)["name"]
        assert client.submit(sum, [1, 2]).result(timeout=120) == 3
        client.close()
        client.cluster.close()  # this process lets go; the cluster runs on
        old = _gateway_pid(hub)
        os.kill(old, signal.SIGKILL)
        hub.wait(
            lambda: (
                _gateway_pid(hub) not in (0, old)
                and hub.status()["components"]["gateway"]["healthy"]
            ),
            60,
            "the gateway to come back",
        )

        def listed_again() -> list[dict] | None:  # type: ignore[type-arg]
            try:  # its proxy answers a moment before it has its routes again
                return lakehub.compute.clusters(client=c)
            except LakeHubError:
                return None

        listed = hub.wait(listed_again, 30, "the gateway's routes")
        assert (cluster, "running") in [(x["name"], x["status"]) for x in listed]
        from dask_gateway import Gateway
        from dask_gateway.auth import JupyterHubAuth

        auth = JupyterHubAuth(api_token=hub.token(name))
        (address,) = [x["address"] for x in listed if x["name"] == cluster]
        proxy = address.rpartition("/")[0]
        with (
            Gateway(f"{hub.url}/services/dask-gateway", proxy, auth=auth) as gw,
            gw.connect(cluster) as again,
            again.get_client(set_as_default=False) as back,
        ):
            assert back.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        # the one with no computation and no client connected: gone after its idle timeout
        hub.wait(
            lambda: idle_name not in [x["name"] for x in lakehub.compute.clusters(client=c)],
            150,
            "the idle cluster to stop",
        )
        assert [x["name"] for x in lakehub.compute.clusters(client=c)] == [cluster]
        lakehub.compute.stop("dask", cluster, client=c)


def test_a_notebook_in_the_dask_environment_is_wired_to_the_gateway(
    dask_ready: Hub, new_user
) -> None:
    hub = dask_ready
    name = new_user("dkn")
    with sdk(hub, name) as c:
        c.servers.start("dk", environment="dask")
        k = Kernel(hub.url, name, hub.token(name), server="dk")
        try:
            out, err = k.run(
                "import lakehub.compute, os\n"
                "client = lakehub.compute.dask(workers=1)\n"
                "print(client.submit(lambda: 41 + 1).result())\n"
                "from dask_gateway import Gateway\n"
                "print(len(Gateway().list_clusters()))\n"
                "client.cluster.shutdown()\n",
                timeout=180,
            )
        finally:
            k.close()
        assert err is None, err
        assert out.split() == ["42", "1"], out
        c.servers.stop("dk")
    with httpx.Client() as h:  # the gateway is not open to anonymous callers
        resp = h.get(f"{hub.url}/services/dask-gateway/api/v1/clusters/")
        assert resp.status_code in (401, 403)


@pytest.fixture(scope="module")
def dashboard(dask_ready: Hub) -> Iterator[tuple[str, str]]:
    """A running cluster of a fresh user; yields (its owner, its dashboard's path)."""
    hub = dask_ready
    owner = f"dd{secrets.token_hex(3)}"
    hub.quick_user(owner)
    with sdk(hub, owner) as c:
        client = lakehub.compute.dask(workers=0, client=c)
        try:
            (url,) = [x["dashboard_url"] for x in lakehub.compute.clusters(client=c)]
            yield owner, urlsplit(url).path  # /services/dask-gateway/clusters/<name>/status
        finally:
            client.cluster.shutdown()
            client.close()


def _pages(path: str) -> list[str]:
    return [path, path.rpartition("/")[0] + "/info/main/logs.html"]


def _cookie_header(browser: httpx.Client) -> str:
    """What a browser sends to the gateway's paths (a websocket client has no cookie jar)."""
    return "; ".join(
        f"{c.name}={c.value}"
        for c in browser.cookies.jar
        if "/services/dask-gateway/".startswith(c.path)
    )


def _websocket(url: str, cookie: str | None = None, origin: str | None = None) -> str:
    """Open a dashboard's bokeh websocket: "open", or the refusal's status."""

    async def go() -> str:
        headers = {"Cookie": cookie} if cookie else {}
        if origin:
            headers["Origin"] = origin
        async with aiohttp.ClientSession() as s:
            try:
                async with s.ws_connect(url, headers=headers):
                    return "open"  # bokeh speaks once its page's script has spoken
            except aiohttp.WSServerHandshakeError as err:
                return f"refused {err.status}"

    return asyncio.run(go())


def test_a_dashboard_is_not_shown_without_credentials(
    dask_ready: Hub, dashboard: tuple[str, str]
) -> None:
    hub, (_, path) = dask_ready, dashboard
    with httpx.Client(base_url=hub.url, timeout=60) as anon:
        for page in _pages(path):
            r = anon.get(page)
            assert r.status_code == 401, (page, r.status_code, r.text[:200])
            assert "bokeh" not in r.text.lower()
            r = anon.get(page, headers={"Authorization": "nonsense"})
            assert r.status_code == 401 and "jupyterhub <token>" in r.text
            # a browser is sent to log in, and ends on the hub's login page, not the dashboard
            r = anon.get(page, headers={"Accept": "text/html"})
            assert r.status_code == 302, (page, r.status_code)
            assert r.headers["location"].startswith("/hub/api/oauth2/authorize?")
            r = anon.get(page, headers={"Accept": "text/html"}, follow_redirects=True)
            assert urlsplit(str(r.url)).path == "/hub/login" and "bokeh" not in r.text.lower()
    ws = f"ws://127.0.0.1:{hub.port}{path}/ws"
    assert _websocket(ws) == "refused 401"


def test_a_dashboard_is_refused_to_other_users_and_to_admins(
    dask_ready: Hub, dashboard: tuple[str, str]
) -> None:
    hub, (_, path) = dask_ready, dashboard
    other, admin = f"ddo{secrets.token_hex(3)}", f"ddx{secrets.token_hex(3)}"
    hub.quick_user(other)
    hub.quick_user(admin, admin=True)
    for name in (other, admin):
        with httpx.Client(base_url=hub.url, timeout=60) as h:
            for page in _pages(path):
                r = h.get(page, headers={"Authorization": f"jupyterhub {hub.token(name)}"})
                assert r.status_code == 404, (name, page, r.status_code, r.text[:200])
                assert "bokeh" not in r.text.lower()
        browser = hub.browser_login(name)
        try:
            for page in _pages(path):
                r = browser.get(page, headers={"Accept": "text/html"})
                assert r.status_code == 404, (name, page, r.status_code, r.text[:200])
                assert "you have no cluster named" in r.text
            cookies = _cookie_header(browser)
        finally:
            browser.close()
        assert _websocket(f"ws://127.0.0.1:{hub.port}{path}/ws", cookies) == "refused 404"


def test_a_dashboard_is_shown_to_its_owner_in_a_browser_and_to_their_token(
    dask_ready: Hub, dashboard: tuple[str, str]
) -> None:
    hub, (owner, path) = dask_ready, dashboard
    with httpx.Client(base_url=hub.url, timeout=60) as h:
        for page in _pages(path):
            r = h.get(page, headers={"Authorization": f"jupyterhub {hub.token(owner)}"})
            assert r.status_code == 200, (page, r.status_code, r.text[:200])
            assert "set-cookie" not in r.headers
    browser = hub.browser_login(owner)
    try:
        # the link clicked in the portal: a silent OAuth round, then the dashboard itself, drawn
        # by bokeh (the `dask` environment carries it)
        r = browser.get(path, headers={"Accept": "text/html"})
        assert r.status_code == 200 and "Dask" in r.text, r.text[:300]
        assert "needs bokeh" not in r.text and "Bokeh" in r.text, r.text[:300]
        assert [urlsplit(str(step.url)).path for step in r.history] == [
            path,
            "/hub/api/oauth2/authorize",
            "/services/dask-gateway/oauth_callback",
        ]
        assert all("token" not in str(step.url) for step in [*r.history, r])
        logs = browser.get(_pages(path)[1])
        assert logs.status_code == 200 and "logs" in logs.text.lower(), logs.text[:300]
        # the page's websocket passes for the owner's session from the hub's own origin and
        # reaches the scheduler's bokeh server, but not from another site
        ws, cookies = f"ws://127.0.0.1:{hub.port}{path}/ws", _cookie_header(browser)
        assert _websocket(ws, cookies, origin=hub.url) == "open"
        assert _websocket(ws, cookies, origin="http://elsewhere.example") == "refused 403"
        # the session cookie is the gateway's own, confined to its path
        session = [c for c in browser.cookies.jar if c.name == "lakehub-dask-session"]
        assert [(c.path, c.has_nonstandard_attr("HttpOnly")) for c in session] == [
            ("/services/dask-gateway/", True)
        ]
    finally:
        browser.close()
