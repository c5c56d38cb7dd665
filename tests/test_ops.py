"""Monitoring on the in-process layer, with the REAL store (VictoriaMetrics scraping the in-process
API every second): who reads which series, dashboards as data drawn in Chromium, alert rules
that the store accepts, a job's failure fired, notified to a webhook in Alertmanager's format,
silenced by its owner and kept in the history; bad input. (Components killed on a real hub:
test_ops_hub.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from endpoints_kit import serving  # noqa: F401 (the environment, the accounts removed after)
from inproc import InProc
from test_jobs import clocked, drive, ended, make_job  # noqa: F401

OPS = "/services/lakehub/api/ops"
PORTAL = "/services/lakehub/"


@pytest.fixture(scope="module", autouse=True)
def no_opsdata_left(inproc: InProc) -> Iterator[None]:
    """The operations data exported here goes at the module's end: the other modules of this
    worker list a user's buckets and datasets exactly."""
    yield
    from lakehub.server.ops.opendata import JOB, SPACE

    owner = inproc.platform.settings.admin_user
    admin = inproc.http(owner)
    for name in ("ops_metrics", "ops_alerts", "ops_events"):
        admin.delete(f"/services/lakehub/api/datasets/{owner}/{name}")
    admin.delete(f"/services/lakehub/api/jobs/{JOB}")
    admin.delete(f"/services/lakehub/api/spaces/{SPACE}")


def wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.25)


def monitor(ip: InProc, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``lakehub monitor ARGS`` as ``who``, in a process of its own."""
    argv = [sys.executable, "-m", "lakehub.cli", "monitor", *args, "--hub", ip.url]
    argv += ["--token", ip.token(who)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def series(c: Any, expr: str) -> list[dict[str, Any]]:
    r = c.get(f"{OPS}/query", params={"expr": expr})
    assert r.status_code == 200, r.text
    return list(r.json()["series"])


def test_a_user_reads_only_their_own_series(metrics_store: InProc, inproc_user: Any) -> None:
    ip = metrics_store
    ann, bob = inproc_user(), inproc_user()
    a, b, admin = ip.http(ann), ip.http(bob), ip.http(ip.platform.settings.admin_user)
    for c, who in ((a, ann), (b, bob)):
        r = c.post("/services/lakehub/api/streams", json={"name": f"s-{who}", "tags": [f"{who}.*"]})
        assert r.status_code == 201, r.text
    metric = "lakehub_stream_received_records_total"

    def both() -> bool:
        users = {s["labels"].get("user") for s in series(admin, metric)}
        return {ann, bob} <= users

    wait_for("both users' streams scraped", both)
    mine = series(a, metric)
    assert mine and {s["labels"]["user"] for s in mine} == {ann}
    # naming the other user's label, an aggregate, a regex: still only one's own
    assert series(a, f'{metric}{{user="{bob}"}}') == []
    assert [x["labels"] for x in series(a, f'{metric}{{user=~".+"}}')] == [mine[0]["labels"]]
    (total,) = series(a, f"count({metric})")
    assert float(total["points"][-1][1]) == 1.0
    assert series(a, "up") == []  # the platform's own series carry no user: not a user's

    # a range, for a dashboard: the store shows a series in a range once a step of the range
    # lies between its first sample and the range's end (a fresh one can be missing for a step)
    def in_range() -> set[str]:
        now = time.time()
        r = a.get(f"{OPS}/query", params={"expr": metric, "start": now - 60, "end": now, "step": 5})
        assert r.status_code == 200, r.text
        return {s["labels"]["user"] for s in r.json()["series"]}

    assert wait_for("ann's series in a range", in_range, timeout=20) == {ann}
    # bad input says why
    now = time.time()
    for params, status, words in [
        ({"expr": "rate(up[1m]"}, 400, "unexpected"),
        ({"expr": ""}, 422, "expr"),
        ({"expr": "up", "start": now, "end": now - 60}, 400, "before end"),
        ({"expr": "up", "start": now - 86400 * 30, "end": now, "step": 1}, 400, "too many points"),
    ]:
        r = a.get(f"{OPS}/query", params=params)
        assert r.status_code == status and words in r.text, r.text
    assert ip.http().get(f"{OPS}/query", params={"expr": "up"}).status_code == 401
    # the metrics page itself: the store's token or an administrator, nobody else
    assert a.get("/services/lakehub/metrics").status_code == 403
    page = admin.get("/services/lakehub/metrics")
    assert page.status_code == 200 and f'stream="s-{ann}"' in page.text
    # the control plane's own requests, by route template
    route = 'route="/api/ops/query"'
    assert f'lakehub_api_requests_total{{code="400",method="GET",{route}}}' in page.text


def test_dashboards_are_data_each_viewer_sees_theirs(
    metrics_store: InProc, inproc_user: Any, tmp_path: Path
) -> None:
    ip = metrics_store
    ann = inproc_user()
    a, admin = ip.http(ann), ip.http(ip.platform.settings.admin_user)
    assert [d["name"] for d in a.get(f"{OPS}/dashboards").json()] == ["mine"]
    assert {d["name"] for d in admin.get(f"{OPS}/dashboards").json()} >= {"overview", "mine"}
    assert a.get(f"{OPS}/dashboards/overview").status_code == 404  # as if it did not exist
    wait_for("the API scraped", lambda: series(admin, 'up{component="api"}'))
    board = admin.get(f"{OPS}/dashboards/overview", params={"hours": 0.1}).json()
    assert [p for p in board["panels"] if p.get("error")] == []
    up = next(p for p in board["panels"] if p["title"] == "Components answering")
    assert {"api", "metrics"} <= {s["name"] for s in up["series"]}
    # a broken dashboard fails where it is read, naming where
    from lakehub.server.ops import dashboards

    bad = tmp_path / "dashboards.yaml"
    bad.write_text(
        "x:\n  audience: admin\n  panels:\n    - title: t\n      expr: up\n      unit: km\n"
    )
    with pytest.raises(ValueError, match="dashboard x, panel 1"):
        dashboards.load(bad)


def test_every_shipped_rule_and_panel_is_promql_the_store_takes(metrics_store: InProc) -> None:
    admin = metrics_store.http(metrics_store.platform.settings.admin_user)
    mon = metrics_store.platform.monitoring
    exprs = [r.expr for r in mon.alerts.rules]
    exprs += [p.expr for b in mon.boards.values() for p in b.panels]
    refused = {}
    for expr in exprs:
        r = admin.get(f"{OPS}/query", params={"expr": expr})
        if r.status_code != 200:
            refused[expr] = r.text
    assert refused == {}
    status = admin.get(f"{OPS}/status").json()
    assert status["store"] is True and "ComponentDown" in status["rules"]


def test_range_points_sent_on_as_written_equal_the_decoded_ones(metrics_store: InProc) -> None:
    """Range answers' points go out as the store wrote them, cut out of its answer; the cut is
    checked against the store's answer decoded whole, with label values that spell the
    separators it cuts at."""
    from lakehub.server.ops.victoria import split_matrix

    store = metrics_store.platform.monitoring.store
    values = ['{"metric":{', '},"values":[[1,"2"]]}', 'a\\"b', "ünï\ncode"]
    text = [v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in values]
    page = "".join(f'lakehub_test_cut{{case="{i}",v="{v}"}} {i}.5\n' for i, v in enumerate(text))
    store.push(page.encode(), {"test": "cut"})
    end = time.time() + 5
    expr, start, step = 'lakehub_test_cut{test="cut"}', end - 60, 1.0

    def by_case(found: list[Any]) -> list[Any]:
        return sorted(found, key=lambda s: s[0]["case"])

    def decoded() -> list[Any]:
        return by_case([(s.labels, s.points) for s in store.query_range(expr, start, end, step)])

    found = wait_for("the pushed series", lambda: len(decoded()) == len(values) and decoded())
    assert [labels["v"] for labels, _ in found] == values
    # the store's own answer is in the layout that is cut, not decoded whole
    params = {"query": expr, "start": start, "end": end, "step": "1s"}
    raw = httpx.get(f"{store.url}/api/v1/query_range", params=params).content
    cut = split_matrix(raw)
    assert cut is not None, raw[:300]
    assert by_case([(s.labels, orjson.loads(s.points)) for s in cut]) == found
    json_path = store.query_range_json(expr, start, end, step)
    assert by_case([(s.labels, orjson.loads(s.points)) for s in json_path]) == found

    async def from_a_loop() -> list[Any]:  # twice: the second over the kept-alive connection
        try:
            return [await store.query_range_json_async(expr, start, end, step) for _ in (1, 2)]
        finally:
            store.close()  # this loop's connections, while it runs

    for answer in asyncio.run(from_a_loop()):
        assert by_case([(s.labels, orjson.loads(s.points)) for s in answer]) == found
    # through the API, as an administrator: the same labels and points
    admin = metrics_store.http(metrics_store.platform.settings.admin_user)
    params = {"expr": expr, "start": start, "end": end, "step": step}
    r = admin.get(f"{OPS}/query", params=params)
    assert r.status_code == 200, r.text
    assert by_case([(s["labels"], s["points"]) for s in r.json()["series"]]) == found
    # layouts it does not cut (the caller decodes them whole); no series
    assert split_matrix(orjson.dumps(orjson.loads(raw), option=orjson.OPT_INDENT_2)) is None
    partial = raw.replace(b'"success",', b'"success","isPartial":true,', 1)
    assert partial != raw and split_matrix(partial) is None
    assert split_matrix(b'{"status":"success","data":{"resultType":"matrix","result":[]}}') == []


def test_a_dashboards_panels_in_one_query_answer_what_each_answers_alone(
    metrics_store: InProc, inproc_user: Any
) -> None:
    """The store evaluates a dashboard's panels in one query and cuts the answer apart again:
    every panel of every dashboard, unrestricted and restricted to a user, gets exactly the
    series its own query gets; a panel the store refuses gets its own error, the others draw."""
    from lakehub.server.ops.base import MetricsStore, OpsError

    ip = metrics_store
    ann = inproc_user()
    r = ip.http(ann).post("/services/lakehub/api/streams", json={"name": "s1", "tags": ["a.*"]})
    assert r.status_code == 201, r.text
    store = ip.platform.monitoring.store
    metric = "lakehub_stream_received_records_total"

    def seen() -> Any:  # 10 s ago: the range compared below ends 3 s ago, a step after it began
        return store.query(metric, time.time() - 10, {"user": ann})

    wait_for("ann's stream scraped 10 s ago", seen, timeout=45)
    wait_for("scrapes some seconds old", lambda: len(store.query("up", time.time() - 5)) >= 2)
    end = time.time() - 3  # samples stored by now; later ones would land between the queries
    start, step = end - 600, 5.0

    def alone(exprs: list[str], only: dict[str, str] | None) -> list[Any]:
        found: list[Any] = []
        for e in exprs:
            try:
                found.append(store.query_range_json(e, start, end, step, only))
            except OpsError as err:
                found.append(err)
        return found

    def comparable(exprs: list[str], answers: list[Any]) -> list[Any]:
        """Labels, times and values to 9 digits (a sum's last digit depends on the order the
        store adds in, which varies between two runs of one query); of a ``topk``, the values
        at each time (it picks among equal values as it likes, again from run to run)."""

        def points(raw: bytes) -> list[tuple[float, str]]:
            return [(t, f"{float(v):.9g}") for t, v in orjson.loads(raw)]

        def by_time(found: list[Any]) -> list[Any]:
            at: dict[float, list[str]] = {}
            for s in found:
                for t, v in points(s.points):
                    at.setdefault(t, []).append(v)
            return sorted((t, sorted(vs)) for t, vs in at.items())

        return [
            repr(a)
            if isinstance(a, OpsError)
            else by_time(a)
            if "topk(" in e
            else sorted((sorted(s.labels.items()), points(s.points)) for s in a)
            for e, a in zip(exprs, answers, strict=True)
        ]

    async def batched(exprs: list[str], only: dict[str, str] | None, how: Any = None) -> Any:
        try:
            return await (how or store.query_ranges_json_async)(exprs, start, end, step, only)
        finally:
            store.close()  # this loop's connections, while it runs

    drawn = 0
    for board in ip.platform.monitoring.boards.values():
        exprs = [p.expr for p in board.panels]
        for only in (None, {"user": ann}):
            together = asyncio.run(batched(exprs, only))
            assert comparable(exprs, together) == comparable(exprs, alone(exprs, only)), board.name
            drawn += sum(len(a) for a in together if not isinstance(a, OpsError))
    assert drawn >= 5  # series were there to compare
    # one bad expression: refused alone, the others still answer, in their places
    exprs = ["up", "rate(up[1m]", f"count({metric})"]
    together = asyncio.run(batched(exprs, {"user": ann}))
    assert isinstance(together[1], OpsError) and "unexpected" in str(together[1])
    assert together[0] == [] and [s.labels for s in together[2]] == [{}]  # type: ignore[union-attr]
    # the contract's own way (one query each), for stores that cannot batch: the same answers
    base = MetricsStore.query_ranges_json_async.__get__(store)
    one_each = asyncio.run(batched(exprs, None, base))
    assert comparable(exprs, one_each) == comparable(exprs, alone(exprs, None))


def test_connections_to_the_store_do_not_pile_up_with_threads(metrics_store: InProc) -> None:
    """The control plane queries from threads that come and go (the event loop's workers):
    their kept-alive connections to the store are shared and bounded, not one per thread
    that ever asked, and closing the store closes them; so are its event loop's (dashboards)."""
    import psutil

    from lakehub.server.ops.victoria import IDLE_MAX

    store = metrics_store.platform.monitoring.store
    port = store.port  # type: ignore[attr-defined]

    def open_to_store() -> int:
        conns = psutil.Process().net_connections("tcp")
        return sum(
            1 for c in conns if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED"
        )

    for _ in range(3 * IDLE_MAX):
        t = threading.Thread(target=store.query, args=("up", time.time()))
        t.start()
        t.join()
    assert open_to_store() <= IDLE_MAX + 1  # + one the rules' loop may hold at this moment
    admin = metrics_store.http(metrics_store.platform.settings.admin_user)
    for _ in range(3):  # the overview's panels at once, from the API's event loop
        assert admin.get(f"{OPS}/dashboards/overview").status_code == 200
    assert open_to_store() <= 2 * IDLE_MAX + 1
    store.close()
    wait_for("the closed connections", lambda: open_to_store() <= 1)


def test_a_failing_job_fires_is_told_silenced_and_kept(
    metrics_store: InProc,
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,  # noqa: F811
) -> None:
    ip = metrics_store
    ann, eve = inproc_user(), inproc_user()
    a, e = ip.http(ann), ip.http(eve)
    make_job(a, "feed", "raise SystemExit('the feed is empty')")
    a.post("/services/lakehub/api/jobs/feed/runs", json={})
    drive(clocked, a, "feed", ended)

    def fired() -> list[dict[str, Any]]:
        return [x for x in a.get(f"{OPS}/alerts").json() if x["rule"] == "JobFailing"]

    (alert,) = wait_for("the job's alert", fired)
    assert alert["state"] == "firing" and alert["labels"] == {"job_name": "feed", "user": ann}
    assert alert["summary"] == f"the last run of job feed of {ann} failed"
    # told to the webhook, in Alertmanager's format
    sink = ip.webhooks
    assert sink is not None

    def told(status: str) -> list[dict[str, Any]]:
        return [
            b
            for b in sink.got
            if b["status"] == status
            and b["commonLabels"].get("job_name") == "feed"
            and b["commonLabels"].get("user") == ann
        ]

    (body,) = wait_for("the webhook", lambda: told("firing"))
    assert body["version"] == "4" and body["alerts"][0]["labels"]["alertname"] == "JobFailing"
    # another user sees nothing of it, and cannot silence it
    assert [x for x in e.get(f"{OPS}/alerts").json() if x["labels"].get("user") == ann] == []
    r = e.post(f"{OPS}/silences", json={"matchers": {"user": ann}, "reason": "quiet"})
    assert r.status_code == 403
    for bad, words in [
        ({"rule": "Nope", "reason": "x"}, "no alert rule"),
        ({"rule": "JobFailing", "reason": " "}, "reason"),
        ({"rule": "JobFailing", "reason": "x", "hours": 0.001}, "a minute"),
    ]:
        r = a.post(f"{OPS}/silences", json=bad)
        assert r.status_code in (400, 404) and words in r.text, r.text
    # its owner silences it: the open alert is covered, its resolution is not told
    r = a.post(f"{OPS}/silences", json={"rule": "JobFailing", "reason": "fixing the feed"})
    assert r.status_code == 201 and r.json()["matchers"] == {"user": ann}
    sid = r.json()["id"]
    (alert,) = fired()
    assert alert["silenced"] == {"id": sid, "by": ann, "reason": "fixing the feed"}
    # a stranger can neither end it nor see it, from the API or the CLI
    assert e.delete(f"{OPS}/silences/{sid}").status_code == 404
    refused = monitor(ip, eve, "unsilence", str(sid))
    assert refused.returncode == 1 and refused.stderr.startswith("error: no silence")
    assert "Traceback" not in refused.stderr and monitor(ip, eve, "silences").stdout == ""
    shown = monitor(ip, ann, "alerts", "--firing").stdout
    assert "FIRING" in shown and "JobFailing" in shown and "silenced by" in shown, shown
    assert monitor(ip, ann, "silences").stdout.startswith(f"{sid}  active"), sid
    shown = monitor(ip, ann, "query", "lakehub_job_last_failed").stdout
    assert 'job_name="feed"' in shown and f'user="{ann}"' in shown, shown
    r = a.patch("/services/lakehub/api/jobs/feed", json={"code": "print('fed')"})
    assert r.status_code == 200, r.text
    clocked.clock.at += 1000  # the run asked for now is due on the test's clock
    a.post("/services/lakehub/api/jobs/feed/runs", json={})
    drive(clocked, a, "feed", lambda runs: len(runs) == 2 and ended(runs))
    wait_for("resolved", lambda: fired()[0]["state"] == "resolved")
    time.sleep(1.5)
    assert told("resolved") == []
    # the history in the portal, with who silenced it and why
    page = ip.browser_login(ann).get(PORTAL + "alerts")
    assert (
        page.status_code == 200
        and "fixing the feed" in page.text
        and 'data-rule="JobFailing"' in page.text
    )
    assert "fixing the feed" not in ip.browser_login(eve).get(PORTAL + "alerts").text
    assert monitor(ip, ann, "unsilence", str(sid)).stdout == f"silence {sid} ended\n"
    assert monitor(ip, ann, "silences").stdout.startswith(f"{sid}  ended")
    # a form with a mistake keeps what was typed
    form = {"rule": "JobFailing", "labels": "job feed", "reason": "typed", "hours": "2"}
    r = ip.browser_login(ann).post(PORTAL + "alerts/silence", data=form)
    assert r.status_code == 422 and "name=value" in r.text and 'value="typed"' in r.text


@pytest.mark.browser
def test_dashboards_draw_every_series_in_chromium(
    metrics_store: InProc, inproc_user: Any, browser: Any, artifacts: Path
) -> None:
    from lakehub.server.web.auth import TOKEN_COOKIE

    ip = metrics_store
    admin = ip.http(ip.platform.settings.admin_user)
    wait_for("two scrapes", lambda: len(series(admin, "up")) >= 2)
    name = ip.platform.settings.admin_user
    shots = artifacts / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    board = admin.get(f"{OPS}/dashboards/overview", params={"hours": 0.1}).json()
    expected = {p["title"]: len(p["series"]) for p in board["panels"] if p["kind"] == "line"}
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    cookie = ip.platform.vault.encrypt(ip.token(name))
    context.add_cookies([{"name": TOKEN_COOKIE, "value": cookie, "url": ip.url + PORTAL}])
    try:
        page = context.new_page()
        page.goto(ip.url + PORTAL + "monitoring/overview?hours=0.1")
        page.wait_for_selector("[data-series]")
        drawn = page.eval_on_selector_all(
            "figure.panel",
            "fs => fs.map(f => { const d = f.querySelector('[data-series]');"
            " return [f.querySelector('figcaption').textContent,"
            " d ? d.getAttribute('data-series') : '0', f.querySelectorAll('canvas').length]; })",
        )
        page.screenshot(path=str(shots / "monitoring-overview.png"), full_page=True)
        got = {title: int(n) for title, n, _ in drawn if title in expected and int(n)}
        # every line panel with series drew each of them, on a canvas of its own
        assert got == {t: n for t, n in expected.items() if n}, (got, expected)
        assert all(canvases == 1 for title, n, canvases in drawn if int(n))
        assert page.locator("header.lh-header").count() == 1  # the portal's look
    finally:
        context.close()


def test_remote_write_is_a_setting(metrics_store: InProc, tmp_path: Path) -> None:
    """``metrics_remote_write`` set: vmagent scrapes and writes every sample to the local store
    and to the remote one (here a second VictoriaMetrics, standing in for a cluster)."""
    import subprocess

    import httpx

    from hubs import free_port
    from lakehub.server.ops.victoria import VictoriaMetrics

    ip = metrics_store
    settings = ip.platform.settings.model_copy()
    remote_port, local_port, agent_port = free_port(), free_port(), free_port()
    remote = f"http://127.0.0.1:{remote_port}"
    settings = settings.model_copy(
        update={"metrics_remote_write": [f"{remote}/api/v1/write"], "data_dir": tmp_path}
    )
    rt = ip.platform.runtime
    ports = {**rt.ports, "metrics": local_port, "metrics_agent": agent_port}
    store = VictoriaMetrics(settings, type(rt)(rt.front_url, ports), lake_metrics=False)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "metrics.token").write_text(ip.platform.tokens.metrics)
    comps = store.process()
    assert [name for name, _ in comps] == ["metrics", "metrics-agent"]
    procs = [
        subprocess.Popen(
            [
                "victoria-metrics",
                f"-storageDataPath={tmp_path / 'remote'}",
                f"-httpListenAddr=127.0.0.1:{remote_port}",
                "-search.latencyOffset=1s",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        for _, proc in comps:
            procs.append(
                subprocess.Popen(
                    proc.argv, cwd=proc.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )

        def scraped(url: str) -> bool:
            try:
                r = httpx.get(f"{url}/api/v1/export", params={"match[]": 'up{component="api"}'})
            except httpx.TransportError:
                return False
            return r.status_code == 200 and '"component":"api"' in r.text

        wait_for("the remote store's copy", lambda: scraped(remote) and scraped(store.url))
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
        store.close()


def test_the_operations_data_is_open_and_names_no_one(
    metrics_store: InProc, inproc_user: Any
) -> None:
    import io
    import json
    from datetime import UTC, datetime

    import pyarrow.parquet as pq
    from botocore.exceptions import ClientError

    from hubs import s3_for
    from lakehub.server.ops.opendata import BUCKET

    ip = metrics_store
    ann, bob = inproc_user(), inproc_user()
    stream = f"payroll-{ann}"
    r = ip.http(ann).post("/services/lakehub/api/streams", json={"name": stream, "tags": ["p.*"]})
    assert r.status_code == 201, r.text
    admin = ip.http(ip.platform.settings.admin_user)
    wait_for(
        "the stream scraped",
        lambda: series(admin, f'lakehub_stream_lag_seconds{{stream="{stream}"}}'),
    )
    today = datetime.now(UTC).date().isoformat()
    assert ip.http(ann).post(f"{OPS}/export", json={}).status_code == 403
    r = admin.post(f"{OPS}/export", json={"day": today})
    assert r.status_code == 200, r.text
    assert r.json()["rows"]["metrics"] > 0
    # every user reads it with their own keys; nobody but its owner writes
    s3 = s3_for(ip.credentials(bob))
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    tables = ("metrics", "alerts", "events")
    assert {"DATASHEET.md", *(f"{t}/date={today}/part-0.parquet" for t in tables)} <= keys
    with pytest.raises(ClientError):
        s3.put_object(Bucket=BUCKET, Key=f"metrics/date={today}/x.parquet", Body=b"x")
    # the documented schema, and no name nor secret anywhere
    secrets = [
        ann,
        bob,
        stream,
        ip.platform.tokens.service,
        ip.platform.tokens.metrics,
        ip.credentials(ann)["secret_access_key"],
    ]
    found: dict[str, list[dict[str, Any]]] = {}
    for key in keys:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        text = body.decode(errors="replace")
        if key.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(body))
            found[key.split("/")[0]] = table.to_pylist()
            text += json.dumps(table.to_pylist(), default=str) + str(table.schema)
        assert [s for s in secrets if s in text] == [], key
    assert set(found["metrics"][0]) == {"ts", "metric", "labels", "value"}
    assert found["events"] and set(found["events"][0]) == {"ts", "kind", "subject"}
    mine = [r for r in found["metrics"] if r["metric"] == "lakehub_stream_lag_seconds"]
    pseudonym = ip.platform.open_data.names(ann)
    assert mine and {json.loads(r["labels"]).get("user") for r in mine} >= {pseudonym}
    # in the catalog, partitioned by day, for every user
    owner = ip.platform.settings.admin_user
    r = ip.http(bob).get(f"/services/lakehub/api/datasets/{owner}/ops_metrics")
    assert r.status_code == 200, r.text
    assert r.json()["partitioning"] == ["date"] and "pseudonymised" in r.json()["description"]


def test_the_anomaly_job_runs_on_the_data_and_findings_reach_the_overview(
    metrics_store: InProc,
    serving: InProc,  # noqa: F811
    clocked: Any,  # noqa: F811
) -> None:
    from datetime import UTC, datetime

    import pyarrow.parquet as pq

    from lakehub.server.ops.opendata import BUCKET, JOB

    ip = metrics_store
    owner = ip.platform.settings.admin_user
    admin = ip.http(owner)
    today = datetime.now(UTC).date().isoformat()
    assert admin.post(f"{OPS}/export", json={"day": today}).status_code == 200
    # made with the space: the owner's daily job, the AI library's detector as its code
    job = admin.get(f"/services/lakehub/api/jobs/{JOB}").json()
    assert job["schedule"] == "cron" and job["expr"] == "30 0 * * *", job
    r = admin.post(f"/services/lakehub/api/jobs/{JOB}/runs", json={"parameters": {"day": today}})
    assert r.status_code == 201, r.text
    asked = r.json()["id"]  # the test's clock may also have planned the daily run: not this one

    def done(runs: list[dict[str, Any]]) -> bool:
        return any(x["id"] == asked and ended([x]) for x in runs)

    (run,) = [x for x in drive(clocked, admin, JOB, done) if x["id"] == asked]
    assert run["state"] == "succeeded", admin.get(
        f"/services/lakehub/api/jobs/{JOB}/runs/{run['id']}/log.txt"
    ).text
    s3 = ip.platform.directory.lake.admin()
    body = s3.get_object(Bucket=BUCKET, Key=f"anomalies/date={today}/part-0.parquet")["Body"]
    table = pq.read_table(__import__("io").BytesIO(body.read()))
    assert set(table.column_names) == {"ts", "component", "cpu", "memory", "latency", "score"}
    # findings become a series the overview counts; a user may not post them
    now = time.time()
    points = [[now - 120, "lake", 0.8], [now - 60, "api", 0.9]]
    assert (
        ip.http(inproc_user_name(ip))
        .post(f"{OPS}/findings", json={"day": today, "points": points})
        .status_code
        == 403
    )
    r = admin.post(f"{OPS}/findings", json={"day": today, "points": points})
    assert r.status_code == 204, r.text

    def counted() -> float:
        board = admin.get(f"{OPS}/dashboards/overview", params={"hours": 0.2}).json()
        panel = next(p for p in board["panels"] if p["title"].startswith("Anomalies"))
        return max((float(v) for s in panel["series"] for _, v in s["points"]), default=0.0)

    assert wait_for("the findings drawn", lambda: counted() >= 2.0)


def inproc_user_name(ip: InProc) -> str:
    import secrets

    name = f"u{secrets.token_hex(3)}"
    ip.quick_user(name)
    return name
