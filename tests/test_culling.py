"""Idle culling (on by default), the timeout shown before it happens, and notebook metrics.

A hub of its own with a 45 s timeout checked every 2 s, so a cull happens within the test (one
wait serves the hub's timeout and the groups' own).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Hub, start_hub, stop_hub
from kernel import start_server, stop_server
from lakehub.client import tls_context
from lakehub.server.config import SettingsError, load_settings

TIMEOUT = 45  # long enough for the steps before the cull on a busy machine


@pytest.fixture(scope="module")
def chub() -> Iterator[Hub]:
    h = start_hub(cull_idle_timeout=str(TIMEOUT), cull_check_interval="2")
    yield h
    stop_hub(h)


def metrics(hub: Hub, token: str) -> dict[str, float]:
    """The metrics page as {sample name{labels}: value}."""
    r = httpx.get(
        f"{hub.url}/services/lakehub/metrics",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        verify=tls_context(),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def spawns(m: dict[str, float]) -> float:
    return m["lakehub_spawn_duration_seconds_count{reason=,status=success}"]


def server_of(hub: Hub, name: str) -> dict | None:
    with hub.http(name) as c:
        return c.get(f"/hub/api/users/{name}").json()["servers"].get("")


def test_settings_are_checked(tmp_path: Path) -> None:
    s = load_settings(data_dir=str(tmp_path))
    assert (s.cull_idle_timeout, s.cull_every) == (3600, 300)  # on by default
    assert load_settings(data_dir=str(tmp_path), cull_idle_timeout=0).cull_every == 0
    with pytest.raises(SettingsError, match="cull_idle_timeout: Input should be greater"):
        load_settings(data_dir=str(tmp_path), cull_idle_timeout=-5)
    with pytest.raises(SettingsError, match=r"cull_check_interval \(90 s\) must not exceed"):
        load_settings(data_dir=str(tmp_path), cull_idle_timeout=60, cull_check_interval=90)


def test_metrics_need_an_administrator_or_the_metrics_token(chub: Hub) -> None:
    chub.quick_user("mallory")
    url = f"{chub.url}/services/lakehub/metrics"
    assert httpx.get(url, timeout=30).status_code == 401
    bad = httpx.get(url, headers={"Authorization": "Bearer not-a-token"}, timeout=30)
    assert bad.status_code == 401
    user = httpx.get(url, headers={"Authorization": f"token {chub.tokens['mallory']}"}, timeout=30)
    assert user.status_code == 403, user.text
    chub.quick_user("boss", admin=True)
    metrics(chub, chub.tokens["boss"])
    metrics(chub, (chub.data_dir / "state" / "metrics.token").read_text().strip())


def test_a_failed_spawn_is_counted(chub: Hub) -> None:
    """A JupyterHub account LakeHub does not know cannot get lake keys, so its spawn fails."""
    token = (chub.data_dir / "state" / "metrics.token").read_text().strip()
    failures = "lakehub_spawn_failures_total{reason=,status=error}"
    before = metrics(chub, token)
    service = (chub.data_dir / "state" / "service.token").read_text().strip()
    with httpx.Client(
        base_url=f"{chub.url}/hub/api", timeout=60, headers={"Authorization": f"token {service}"}
    ) as c:
        assert c.post("/users/stranger").status_code == 201
        r = c.post("/users/stranger/server")
        assert r.status_code >= 400, r.text
        chub.wait(lambda: not c.get("/users/stranger").json()["servers"], what="spawn to end")
    after = metrics(chub, token)
    assert after[failures] == before[failures] + 1
    assert spawns(after) == spawns(before)
    assert after["lakehub_running_servers{}"] == before["lakehub_running_servers{}"]


def test_idle_servers_are_culled_after_warning_by_their_timeouts_and_counted(chub: Hub) -> None:
    """One wait for four servers: an idle one (the hub's timeout), an active one (never), one in
    a group that is never culled and one in a group with a 6 s timeout."""
    token = (chub.data_dir / "state" / "metrics.token").read_text().strip()
    idle, busy, patient, hasty = "idler", "worker", "patient1", "hasty1"
    for user in (idle, busy, patient, hasty):
        chub.quick_user(user)
    for user, group, timeout in ((patient, "nevercull", "0"), (hasty, "quickcull", "6")):
        chub.cli("group", "create", group)
        chub.cli("group", "add", group, user)
        chub.cli("policy", "set", "--group", group, "--idle-timeout", timeout)
    start_server(chub.url, patient, chub.tokens[patient])  # idle for longest, never culled
    m0 = metrics(chub, token)
    assert m0["lakehub_running_servers{}"] == 1

    start_server(chub.url, idle, chub.tokens[idle])
    m1 = metrics(chub, token)
    assert spawns(m1) == spawns(m0) + 1
    assert m1["lakehub_running_servers{}"] == 2
    assert m1["lakehub_spawn_duration_seconds_sum{reason=,status=success}"] > 0
    # a file the user keeps
    with chub.http(idle) as c:
        r = c.put(
            f"/user/{idle}/api/contents/keep.txt",
            json={"type": "file", "format": "text", "content": "still here"},
        )
        assert r.status_code in (200, 201), r.text

    start_server(chub.url, busy, chub.tokens[busy])
    assert metrics(chub, token)["lakehub_running_servers{}"] == 3

    # the other user stays active (what a server reports for its user), which must not matter
    stop = threading.Event()

    def keep_busy() -> None:
        with chub.http(busy) as c:
            while not stop.is_set():
                now = datetime.now(UTC).isoformat()
                c.post(
                    f"/hub/api/users/{busy}/activity",
                    json={"last_activity": now, "servers": {"": {"last_activity": now}}},
                )
                stop.wait(2)

    worker = threading.Thread(target=keep_busy, daemon=True)
    worker.start()
    try:
        # before the cull: the API and the portal say when it will happen, by the group's rule
        with chub.http(idle) as c:
            before = c.get("/services/lakehub/api/me/server").json()
        assert before["running"] and before["idle_timeout"] == TIMEOUT, before
        last = datetime.fromisoformat(before["last_activity"])
        assert datetime.fromisoformat(before["cull_at"]) == last + timedelta(seconds=TIMEOUT)
        page = chub.browser_login(idle).get("/services/lakehub/").text
        with chub.http(idle) as c:
            after = c.get("/services/lakehub/api/me/server").json()
        shown = re.search(r"Stops at (\d\d:\d\d) UTC if idle", page)
        assert shown, page
        times = {datetime.fromisoformat(x["cull_at"]).strftime("%H:%M") for x in (before, after)}
        assert shown.group(1) in times
        with chub.http(patient) as c:
            mine = c.get("/services/lakehub/api/servers").json()
            assert [(s["idle_timeout"], s["cull_at"]) for s in mine] == [(0, None)]
            assert c.get("/services/lakehub/api/me/server").json()["idle_timeout"] == 0

        # a group's shorter timeout: culled long before the hub's
        start_server(chub.url, hasty, chub.tokens[hasty])
        with chub.http(hasty) as c:
            mine = c.get("/services/lakehub/api/servers").json()
        assert [(s["name"], s["idle_timeout"]) for s in mine] == [("default", 6)]
        t0 = time.monotonic()
        chub.wait(lambda: server_of(chub, hasty) is None, 30, "the hasty server to be culled")
        assert time.monotonic() - t0 < TIMEOUT
        assert server_of(chub, idle) is not None

        chub.wait(
            lambda: server_of(chub, idle) is None,
            timeout=TIMEOUT + 40,
            what="the idle server to be culled",
        )
        assert server_of(chub, busy) is not None, "an active user's server was culled"
        # idle since before the idle one: past the hub's timeout, and its group's 0 keeps it
        assert server_of(chub, patient) is not None, "a never-culled group's server was culled"
    finally:
        stop.set()
        worker.join()

    m2 = metrics(chub, token)
    assert m2["lakehub_culls_total{}"] == m0["lakehub_culls_total{}"] + 2
    assert m2["lakehub_running_servers{}"] == 2
    assert (chub.data_dir / "homes" / idle / "keep.txt").read_text() == "still here"
    with chub.http(idle) as c:
        assert c.get("/services/lakehub/api/me/server").json()["running"] is False
    assert "Stops at" not in chub.browser_login(idle).get("/services/lakehub/").text

    for user in (busy, patient):
        stop_server(chub.url, user, chub.tokens[user])
    m3 = metrics(chub, token)
    assert m3["lakehub_running_servers{}"] == 0
    assert m3["lakehub_culls_total{}"] == m2["lakehub_culls_total{}"]  # a stop is not a cull


@pytest.mark.browser
def test_portal_shows_the_cull_time_in_a_browser(chub: Hub, artifacts: Path, browser: Any) -> None:
    from playwright.sync_api import expect

    name = "viewer"
    chub.quick_user(name)
    start_server(chub.url, name, chub.tokens[name])
    try:
        page = browser.new_page()
        page.goto(f"{chub.url}/hub/login?next=/services/lakehub/")
        page.fill("#username_input", name)
        page.fill("#password_input", chub.passwords[name])
        page.click("#login_submit")
        expect(page.locator("#cull-at")).to_contain_text(
            re.compile(r"Stops at \d\d:\d\d UTC if idle"), timeout=15_000
        )
        (artifacts / "browser").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(artifacts / "browser" / "culling-home.png"), full_page=True)
        page.close()
    finally:
        stop_server(chub.url, name, chub.tokens[name])
