"""Jobs on a real hub: the control plane (which runs the scheduler) killed with SIGKILL during a
run and between runs of a schedule that fires every 10 s; the supervisor starts it again, and
no run is lost or doubled: the run that was going is adopted and ends once, with its output, and
every planned time is one row."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx

from conftest import Hub

API = "/services/lakehub/api/jobs"
SLOW = "import time\nprint('begun', flush=True)\ntime.sleep(4)\nprint('ended', flush=True)\n"


def _runs(c: httpx.Client, name: str) -> list[dict[str, Any]]:
    r = c.get(f"{API}/{name}/runs", params={"limit": 200})
    r.raise_for_status()
    return sorted(r.json(), key=lambda x: x["planned_at"])


def _kill_control_plane(hub: Hub) -> None:
    before = hub.runtime()["components"]["api"]
    os.kill(before["pid"], signal.SIGKILL)  # the process alone: the attempts are not its group

    def back() -> bool:
        comp = hub.status()["components"]["api"]
        return bool(comp["restarts"] >= before["restarts"] + 1 and comp["healthy"])

    hub.wait(back, timeout=60, what="the control plane to come back")


def _until(c: httpx.Client, name: str, done: Any, timeout: float = 90) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = _runs(c, name)
            if done(found):
                return found
        except httpx.HTTPError:
            pass  # the control plane is coming back
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: {_runs(c, name)}")
        time.sleep(0.3)


def test_a_killed_control_plane_neither_loses_nor_doubles_a_run(hub: Hub, new_user: Any) -> None:
    user = new_user("kill")
    headers = {"Authorization": f"token {hub.token(user)}"}
    with httpx.Client(base_url=hub.url, headers=headers, timeout=30) as c:
        body = {"name": "slow", "code_name": "slow.py", "code": SLOW}
        assert c.post(API, json=body).status_code == 201
        run = c.post(f"{API}/slow/runs", json={}).json()
        _until(c, "slow", lambda f: f and f[0]["state"] == "running" and f[0]["attempt"] == 1)
        time.sleep(1)  # its process has begun
        _kill_control_plane(hub)
        (done,) = _until(c, "slow", lambda f: f and f[0]["state"] not in ("running", "planned"))
        assert done["id"] == run["id"] and done["state"] == "succeeded", done
        assert done["attempt"] == 1  # adopted, not started again
        log = c.get(f"{API}/slow/runs/{run['id']}/log.txt").text
        assert log.count("begun") == 1 and "ended" in log, log

        # a schedule every 10 s, the control plane killed between two of its runs
        body = {
            "name": "tick",
            "code_name": "tick.py",
            "code": "print('tick')",
            "schedule": "interval",
            "expr": "10s",
        }
        assert c.post(API, json=body).status_code == 201
        first = _until(c, "tick", lambda f: any(r["state"] == "succeeded" for r in f), 40)
        _kill_control_plane(hub)
        n = len(first)
        found = _until(c, "tick", lambda f: sum(r["state"] == "succeeded" for r in f) >= n + 1, 60)
        planned = [r["planned_at"] for r in found]
        assert len(planned) == len(set(planned)), planned  # every planned time once
        assert {r["state"] for r in found} <= {
            "succeeded",
            "running",
            "planned",
            "missed",
            "skipped",
        }
        assert c.delete(f"{API}/tick").status_code == 204
        assert c.delete(f"{API}/slow").status_code == 204


CLUSTERED = """import lakehub.compute
client = lakehub.compute.dask()
print('ANSWER', client.submit(lambda: 6 * 7).result(), len(client.scheduler_info()['workers']))
"""


def test_a_run_gets_a_dask_cluster_of_its_own_stopped_after_it(hub: Hub, new_user: Any) -> None:
    hub.wait_environments("dask")
    user = new_user("clus")
    headers = {"Authorization": f"token {hub.token(user)}"}
    with httpx.Client(base_url=hub.url, headers=headers, timeout=60) as c:
        body = {
            "name": "fit",
            "code_name": "fit.py",
            "code": CLUSTERED,
            "environment": "dask",
            "cluster": "dask",
            "cluster_workers": 1,
        }
        made = c.post(API, json=body)
        assert made.status_code == 201, made.text
        assert (made.json()["cluster"], made.json()["cluster_workers"]) == ("dask", 1)
        run = c.post(f"{API}/fit/runs", json={}).json()
        (done,) = _until(c, "fit", lambda f: f and f[0]["state"] not in ("running", "planned"), 180)
        log = c.get(f"{API}/fit/runs/{run['id']}/log.txt").text
        assert done["state"] == "succeeded", log
        assert "ANSWER 42 1" in log and "a dask cluster of 1 workers for this run" in log
        assert c.get("/services/lakehub/api/compute").json() == []  # stopped with the run
        assert c.delete(f"{API}/fit").status_code == 204
