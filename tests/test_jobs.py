"""Jobs (in-process layer, real attempts): the schedule arithmetic as a matrix (cron through both
clock changes, intervals, once); the scheduler driven by a clock the tests set, so planned,
missed, retried, timed-out and overlapping runs happen without waiting, each attempt a real
process in the ``datascience`` environment as the owner's account; a scheduler replaced while a
run goes on (a control plane's crash) neither loses nor doubles it; a notebook with parameters
through the API and the SDK; bad input; a stranger sees nothing of another's job."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from endpoints_kit import serving  # noqa: F401 (the environment, the accounts removed after)
from inproc import InProc

API = "/services/lakehub/api/jobs"
PARIS = ZoneInfo("Europe/Paris")
MIN = 60_000


def ms(*args: int, tz: ZoneInfo = PARIS) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)  # type: ignore[misc]


def wall(t: int, tz: ZoneInfo = PARIS) -> str:
    return datetime.fromtimestamp(t / 1000, tz).strftime("%m-%d %H:%M%z")


# the arithmetic ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "start", "end", "expected"),
    [
        # autumn: 02:30 comes twice on 25 October; the job runs once, at the first
        (
            "30 2 * * *",
            (2026, 10, 24),
            (2026, 10, 27),
            ["10-24 02:30+0200", "10-25 02:30+0200", "10-26 02:30+0100"],
        ),
        # spring: 02:30 does not exist on 29 March; the job runs at the jump, once
        (
            "30 2 * * *",
            (2026, 3, 28),
            (2026, 3, 31),
            ["03-28 02:30+0100", "03-29 03:00+0200", "03-30 02:30+0200"],
        ),
        ("0 9 * * 1-5", (2026, 12, 4), (2026, 12, 8), ["12-04 09:00+0100", "12-07 09:00+0100"]),
    ],
)
def test_cron_follows_the_wall_clock(
    expr: str, start: tuple[int, ...], end: tuple[int, ...], expected: list[str]
) -> None:
    from lakehub.server.jobs import schedule as sched

    s = sched.parse("cron", expr, "Europe/Paris", 0)
    assert [wall(t) for t in sched.due(s, ms(*start), ms(*end))] == expected


def test_intervals_count_from_the_start_and_once_is_once() -> None:
    from lakehub.server.jobs import schedule as sched

    s = sched.parse("interval", "15m", "UTC", 1_000_000)
    first = 1_000_000 + 15 * MIN
    assert s.start_ms == first
    assert sched.due(s, 0, first - 1) == []
    assert sched.due(s, 0, first + 31 * MIN) == [first, first + 15 * MIN, first + 30 * MIN]
    assert sched.due(s, first + 7 * MIN, first + 31 * MIN) == [first + 15 * MIN, first + 30 * MIN]
    assert sched.next_time(s, first) == first + 15 * MIN
    # ten weeks of a minutely job missed: the newest are kept, no more than the scan limit
    m = sched.parse("interval", "60s", "UTC", 0)
    assert len(sched.due(m, 0, 70 * 1440 * MIN)) == sched.SCAN_LIMIT
    once = sched.parse("once", "2027-01-04T07:00", "Europe/Paris", 0)
    assert once.start_ms == ms(2027, 1, 4, 7, 0)
    assert sched.due(once, 0, once.start_ms) == [once.start_ms]
    assert sched.due(once, once.start_ms, once.start_ms + MIN) == []


@pytest.mark.parametrize(
    ("kind", "expr", "zone", "message"),
    [
        ("cron", "61 * * * *", "UTC", "bad cron expression"),
        ("cron", "* * *", "UTC", "bad cron expression"),
        ("cron", "0 3 * * *", "Mars/Olympus", "unknown time zone"),
        ("interval", "5s", "UTC", "at least 10s"),
        ("interval", "fortnightly", "UTC", "bad interval"),
        ("once", "next tuesday", "UTC", "bad time"),
        ("hourly", "", "UTC", "schedule must be one of"),
    ],
)
def test_bad_schedules_say_why(kind: str, expr: str, zone: str, message: str) -> None:
    from lakehub.server.jobs import schedule as sched
    from lakehub.server.jobs.base import JobsError

    with pytest.raises(JobsError, match=message):
        sched.parse(kind, expr, zone, 0)


# the scheduler, on a clock of the tests' ---------------------------------------------------------
class Clock:
    def __init__(self, at: int) -> None:
        self.at = at

    def now_ms(self) -> int:
        return self.at


@pytest.fixture
def clocked(serving: InProc) -> Iterator[Any]:  # noqa: F811
    """The platform's scheduler on a clock the test sets (the layer runs no loop of it)."""
    from lakehub.server.jobs.base import Clock as RealClock

    scheduler = serving.platform.jobs.scheduler
    scheduler.clock = Clock(ms(2026, 12, 7, 8, 0))
    yield scheduler
    scheduler.clock = RealClock()


def make_job(c: Any, name: str, code: str, **settings: Any) -> dict[str, Any]:
    body = {"name": name, "code_name": f"{name}.py", "code": code, **settings}
    r = c.post(API, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def runs_of(c: Any, name: str) -> list[dict[str, Any]]:
    r = c.get(f"{API}/{name}/runs", params={"limit": 500})
    assert r.status_code == 200, r.text
    return sorted(r.json(), key=lambda x: (x["planned_at"], x["id"]))


def drive(
    scheduler: Any, c: Any, name: str, done: Any, timeout: float = 60
) -> list[dict[str, Any]]:
    """Tick (the clock standing still) until ``done(runs)``; the runs."""
    deadline = time.monotonic() + timeout
    while True:
        scheduler.tick()
        found = runs_of(c, name)
        if done(found):
            return found
        if time.monotonic() > deadline:
            logs = [c.get(f"{API}/{name}/runs/{r['id']}/log.txt").text[-2000:] for r in found]
            raise AssertionError(f"{found}\n{logs}")
        time.sleep(0.1)


def ended(found: list[dict[str, Any]]) -> bool:
    return bool(found) and all(r["state"] not in ("planned", "running", "waiting") for r in found)


def test_planned_once_missed_by_policy_and_never_doubled(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,
) -> None:
    from lakehub.server.jobs.scheduler import Scheduler

    user = inproc_user()
    c = serving.http(user)
    make_job(c, "tick", "print('tick')", schedule="cron", expr="*/5 * * * *", missed="latest")
    clocked.tick()
    assert runs_of(c, "tick") == []  # 08:00 itself was before the job
    clocked.clock.at += 5 * MIN + 1000  # 08:05:01
    found = drive(clocked, c, "tick", ended)
    assert [(r["trigger"], r["state"]) for r in found] == [("schedule", "succeeded")]
    # the hub down for an hour: eleven times missed, the latest run once it is back
    clocked.clock.at += 62 * MIN  # 09:07:01, 09:05 two minutes ago
    found = drive(clocked, c, "tick", ended)
    states = [r["state"] for r in found[1:]]
    assert states == ["missed"] * 11 + ["succeeded"], states
    assert found[-1]["trigger"] == "catch-up" and "hub was down" in found[1]["reason"]
    notices = c.get("/services/lakehub/api/notices").json()
    (notice,) = [n for n in notices if n["event"] == "missed"]
    assert notice["message"].startswith("11 planned time(s)")
    # and an hour without a success on a five-minute schedule is said once, not each pass
    assert [n["event"] for n in notices].count("stale") == 1
    # with a time current when it is back (09:20, not yet a minute ago), that one runs alone
    clocked.clock.at += 13 * MIN
    found = drive(clocked, c, "tick", ended)
    assert [(r["trigger"], r["state"]) for r in found[-3:]] == [
        ("schedule", "missed"),
        ("schedule", "missed"),
        ("schedule", "succeeded"),
    ]
    # another scheduler over the same database (a control plane restarted) plans nothing twice
    again = Scheduler(
        clocked.db,
        clocked.executor,
        clocked.environments,
        clocked.policies,
        clocked.files,
        clocked.job_env,
        clocked.notices,
    )
    again.tick()
    clocked.tick()
    assert len(runs_of(c, "tick")) == len(found)
    log = c.get(f"{API}/tick/runs/{found[-1]['id']}/log.txt")
    assert log.status_code == 200 and "tick" in log.text


def test_the_autumn_clock_change_runs_a_daily_job_once(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,
) -> None:
    c = serving.http(inproc_user())
    clocked.clock.at = ms(2026, 10, 24, 12, 0)
    make_job(c, "daily", "pass", schedule="cron", expr="30 2 * * *", timezone="Europe/Paris")
    while clocked.clock.at < ms(2026, 10, 26, 12, 0):  # two days, ten minutes a tick
        clocked.clock.at += 10 * MIN
        clocked.tick()
    found = drive(clocked, c, "daily", ended)
    planned = [wall(int(datetime.fromisoformat(r["planned_at"]).timestamp() * 1000)) for r in found]
    assert planned == ["10-25 02:30+0200", "10-26 02:30+0100"]


def test_failures_are_retried_then_told_and_a_timeout_stops_a_run(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,
) -> None:
    c = serving.http(inproc_user())
    make_job(c, "boom", "raise ValueError('no data for today')", retries=1, backoff_s=5)
    r = c.post(f"{API}/boom/runs", json={})
    assert r.status_code == 201 and r.json()["trigger"] == "manual"
    first = drive(clocked, c, "boom", lambda f: f[0]["state"] == "waiting")[0]
    assert first["attempt"] == 1 and "attempt 2 in" in first["reason"]
    clocked.tick()
    assert runs_of(c, "boom")[0]["state"] == "waiting"  # its backoff (4-6 s) is not over
    clocked.clock.at += 7000
    (run,) = drive(clocked, c, "boom", ended)
    assert run["state"] == "failed" and run["attempt"] == 2 and run["exit_code"] == 1
    assert "job's code failed" in run["reason"]
    log = c.get(f"{API}/boom/runs/{run['id']}/log.txt").text
    assert "ValueError: no data for today" in log
    # killed from outside (as by the kernel's OOM killer): an infrastructure failure, retried
    kill = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"
    make_job(c, "killed", kill, backoff_s=1)
    c.post(f"{API}/killed/runs", json={})
    for _ in range(4):
        drive(clocked, c, "killed", lambda f: f[0]["state"] in ("waiting", "lost"))
        clocked.clock.at += 10_000
    (run,) = drive(clocked, c, "killed", ended)
    assert run["state"] == "lost" and run["attempt"] == 4, run
    # a timeout: the attempt is stopped and the run fails, saying so
    make_job(c, "slow", "import time\ntime.sleep(120)", timeout_s=10)
    c.post(f"{API}/slow/runs", json={})
    drive(clocked, c, "slow", lambda f: f[0]["state"] == "running")
    clocked.clock.at += 11_000
    (run,) = drive(clocked, c, "slow", ended)
    assert run["state"] == "failed" and "timed out after 10 s" in run["reason"]


@pytest.mark.parametrize("policy", ["forbid", "replace", "allow"])
def test_overlapping_runs_follow_the_concurrency_policy(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,
    policy: str,
) -> None:
    c = serving.http(inproc_user())
    code = "import time\ntime.sleep(4)"
    make_job(c, "long", code, schedule="interval", expr="1m", concurrency=policy)
    clocked.clock.at += MIN
    drive(clocked, c, "long", lambda f: f and f[0]["state"] == "running")
    clocked.clock.at += MIN
    found = drive(clocked, c, "long", ended)
    states = [r["state"] for r in found]
    expected = {
        "forbid": ["succeeded", "skipped"],
        "replace": ["cancelled", "succeeded"],
        "allow": ["succeeded", "succeeded"],
    }
    assert states == expected[policy], found
    if policy != "allow":
        assert f"{found[0]['id']}" in found[1]["reason"] or "replaced" in found[0]["reason"]


def test_a_run_outlives_its_scheduler(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,
) -> None:
    """The control plane gone mid-run (its scheduler's memory lost): the next one adopts the
    attempt by its key, and records how it ended; nothing is started twice."""
    c = serving.http(inproc_user())
    make_job(c, "adopted", "import time\ntime.sleep(3)\nprint('done')")
    c.post(f"{API}/adopted/runs", json={})
    drive(clocked, c, "adopted", lambda f: f[0]["state"] == "running")
    clocked.attempts.clear()  # what a crash takes with it
    (run,) = drive(clocked, c, "adopted", ended)
    assert run["state"] == "succeeded" and run["attempt"] == 1, run


NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    "cells": [
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "id": "p",
            "source": "day = 'monday'\nn = 2",
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "code",
            "metadata": {},
            "source": "print(f'{day}:{n * 21}')",
            "outputs": [],
            "execution_count": None,
            "id": "q",
        },
    ],
}


def test_a_notebook_with_parameters_and_what_a_stranger_sees(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,
) -> None:
    import lakehub.jobs as jobs
    from lakehub.client import LakeHubError, connect

    ann, eve = inproc_user(), inproc_user()
    c = serving.http(ann)
    client = connect(serving.url, serving.token(ann))
    body = {"name": "report", "code_name": "report.ipynb", "code": json.dumps(NOTEBOOK)}
    r = c.post(API, json={**body, "parameters": {"day": "friday"}})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "notebook" and r.json()["describe"] == "by hand"
    run = jobs.run("report", parameters={"n": 3}, client=client)
    (done,) = drive(clocked, c, "report", ended, timeout=180)
    assert done["state"] == "succeeded", c.get(f"{API}/report/runs/{run['id']}/log.txt").text
    assert done["parameters"] == {"day": "friday", "n": 3}
    assert done["environment_build"].startswith("datascience-")
    out = json.loads(jobs.output("report", run["id"], client=client))
    printed = "".join("".join(o.get("text", "")) for cell in out["cells"] for o in cell["outputs"])
    assert "friday:63" in printed
    # its output as a read-only page (a stranger cannot publish it)
    import lakehub.publish as publish

    p = publish.run("report", run["id"], client=client)
    assert p["versions"][0]["source"] == f"job report, run {run['id']}"
    r = c.get(f"/services/lakehub/{p['url']}", headers={"accept": "text/html"})
    assert r.status_code == 200 and "friday:63" in r.text
    e = serving.http(eve)
    r = e.post("/services/lakehub/api/published", json={"name": "x", "job": "report", "run": 1})
    assert r.status_code == 404 and "does not exist" in r.text
    # a stranger: as if the job did not exist, whatever they try
    for method, path, payload in [
        ("GET", "/report", None),
        ("PATCH", "/report", {"paused": True}),
        ("DELETE", "/report", None),
        ("GET", "/report/runs", None),
        ("POST", "/report/runs", {}),
        ("GET", f"/report/runs/{run['id']}/output.ipynb", None),
        ("POST", f"/report/runs/{run['id']}/cancel", None),
    ]:
        r = e.request(method, API + path, json=payload)
        assert r.status_code == 404 and "does not exist" in r.text, (method, path, r.text)
    assert e.get(API).json() == []
    assert [j["name"] for j in c.get(API).json()] == ["report"]
    with pytest.raises(LakeHubError, match="does not exist"):
        jobs.get("report", client=connect(serving.url, serving.token(eve)))
    assert c.delete(f"{API}/report").status_code == 204
    assert c.get(f"{API}/report").status_code == 404


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"name": "Bad_Name"}, 400, "bad job name"),
        ({"code_name": "job.sh"}, 400, "a .ipynb notebook or a .py script"),
        ({"code_name": "nb.ipynb", "code": "not json"}, 400, "is not a notebook"),
        ({"code": ""}, 400, "the code must be text"),
        ({"schedule": "cron", "expr": "0 25 * * *"}, 400, "bad cron expression"),
        ({"schedule": "cron", "expr": "0 3 * * *", "timezone": "Nowhere"}, 400, "time zone"),
        ({"schedule": "interval", "expr": "1s"}, 400, "at least 10s"),
        ({"environment": "nonexistent"}, 403, "not one you may use"),
        ({"size": "enormous"}, 403, "not one you may use"),
        ({"retries": 99}, 400, "retries must be a whole number from 0 to 20"),
        ({"timeout_s": 1}, 400, "timeout_s must be"),
        ({"parameters": [1, 2]}, 422, ""),
        ({"missed": "sometimes"}, 422, ""),
    ],
)
def test_bad_jobs_are_refused_and_nothing_is_kept(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    change: dict[str, Any],
    status: int,
    message: str,
) -> None:
    c = serving.http(inproc_user())
    body = {"name": "good", "code_name": "good.py", "code": "pass", **change}
    r = c.post(API, json=body)
    assert r.status_code == status and message in r.text, r.text
    assert c.get(API).json() == []
    assert make_job(c, "good", "pass")["code_version"] == 1
    r = c.patch(f"{API}/good", json={k: v for k, v in change.items() if k != "name"})
    if "name" not in change:
        assert r.status_code == status and message in r.text, r.text
    assert c.get(f"{API}/good").json()["code_version"] == 1  # a refused change changed nothing


def test_the_portal_makes_shows_and_runs_a_job(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,
) -> None:
    ann, eve = inproc_user(), inproc_user()
    b = serving.browser_login(ann)
    page = "/services/lakehub/jobs"
    r = b.get(page)
    assert r.status_code == 200 and 'id="none"' in r.text and f'href="{page}">Jobs</a>' in r.text
    form = {"name": "Bad Name", "schedule": "cron", "expr": "0 3 * * *", "timezone": "Asia/Tokyo"}
    files = {"code": ("hello.py", b"print('hello from the portal')", "text/x-python")}
    r = b.post(page, data=form, files=files)
    assert r.status_code == 400 and "bad job name" in r.text
    assert 'value="0 3 * * *"' in r.text and 'value="Asia/Tokyo"' in r.text  # kept as typed
    r = b.post(page, data={**form, "name": "hello"}, files=files)
    assert r.status_code == 200 and "cron 0 3 * * * (Asia/Tokyo)" in r.text, r.text[-2000:]
    assert 'id="next"' in r.text
    r = b.post(f"{page}/hello/run")
    assert r.status_code == 200 and "starts now" in r.text
    (run,) = drive(clocked, serving.http(ann), "hello", ended)
    assert run["state"] == "succeeded"
    r = b.get(f"{page}/hello")
    assert f'data-run="{run["id"]}"' in r.text and "succeeded" in r.text
    log = b.get(f"{page}/hello/runs/{run['id']}/log.txt")
    assert log.status_code == 200 and "hello from the portal" in log.text
    e = serving.browser_login(eve)
    assert e.get(f"{page}/hello").status_code == 404
    assert e.get(f"{page}/hello/runs/{run['id']}/log.txt").status_code == 404
    r = e.post(f"{page}/hello/run")  # refused: back to a page that, for eve, does not exist
    assert r.status_code == 404 and "does not exist" in r.text
    assert [x["id"] for x in serving.http(ann).get(f"{API}/hello/runs").json()] == [run["id"]]
    r = b.post(f"{page}/hello/remove")
    assert r.status_code == 200 and "Job hello removed." in r.text


class Receiver:
    """A webhook receiver on 127.0.0.1: answers 500 to its first ``fail`` calls, then 200."""

    def __init__(self, fail: int) -> None:
        import http.server
        import threading

        received: list[dict[str, Any]] = []
        self.received, self.fail = received, fail
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(500 if len(received) <= outer.fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?key=s3cret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_failure_is_told_in_the_portal_and_to_a_webhook(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,
) -> None:
    ann, eve = inproc_user(), inproc_user()
    c, e = serving.http(ann), serving.http(eve)
    receiver = Receiver(fail=1)
    try:
        for bad, message in [
            ("ftp://example.org/x", "http:// or https://"),
            ("http://10.1.2.3/hook", "local or private address"),
            ("http://169.254.169.254/latest", "local or private address"),
        ]:
            r = c.post(API, json={"name": "x", "code_name": "x.py", "code": "1", "webhook": bad})
            assert r.status_code == 400 and message in r.text, r.text
        job = make_job(c, "alarm", "raise SystemExit('the feed is empty')", webhook=receiver.url)
        assert job["webhook"] is True and "s3cret" not in json.dumps(c.get(f"{API}/alarm").json())
        run = c.post(f"{API}/alarm/runs", json={}).json()
        drive(clocked, c, "alarm", ended)
        (notice,) = c.get("/services/lakehub/api/notices").json()
        assert notice["event"] == "failed" and notice["run_id"] == run["id"]
        assert notice["webhook"] == "pending" and "the job's code failed" in notice["message"]
        assert e.get("/services/lakehub/api/notices").json() == []
        r = e.post(f"/services/lakehub/api/notices/{notice['id']}/dismiss")
        assert r.status_code == 404
        # the receiver fails once: retried after its backoff, then delivered
        assert clocked.notices.deliver() == 0 and len(receiver.received) == 1
        assert clocked.notices.deliver() == 0 and len(receiver.received) == 1  # not yet due
        clocked.clock.at += 6000
        assert clocked.notices.deliver() == 1
        assert [p["event"] for p in receiver.received] == ["failed", "failed"]
        assert receiver.received[1] | {"at": None} == {
            "job": "alarm",
            "owner": ann,
            "run": run["id"],
            "event": "failed",
            "message": notice["message"],
            "at": None,
        }
        (notice,) = c.get("/services/lakehub/api/notices").json()
        assert notice["webhook"] == "sent"
        page = serving.browser_login(ann).get("/services/lakehub/jobs")
        assert f'data-notice="{notice["id"]}"' in page.text and "webhook sent" in page.text
        r = c.post(f"/services/lakehub/api/notices/{notice['id']}/dismiss")
        assert r.status_code == 204 and c.get("/services/lakehub/api/notices").json() == []
    finally:
        receiver.close()


def test_the_command_line(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,
    tmp_path: Any,
) -> None:
    """``lakehub job``: made with a schedule and parameters, run and waited for while the
    scheduler goes on (here a thread ticking it), its runs and log; refusals in one line."""
    import subprocess
    import sys
    import threading

    token = serving.token(inproc_user())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "lakehub.cli", "job", *args]
        argv += ["--hub", serving.url, "--token", token]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    script = tmp_path / "greet.py"
    script.write_text("import lakehub.jobs\nprint('hello', lakehub.jobs.parameters()['who'])\n")
    made = cli(
        "create",
        "greet",
        str(script),
        "--cron",
        "0 6 * * 1",
        "--tz",
        "Europe/Paris",
        "-p",
        "who=world",
        "-p",
        "n=3",
    )
    assert made.returncode == 0 and "cron 0 6 * * 1 (Europe/Paris)" in made.stdout, made.stderr
    assert "greet" in cli("ls").stdout
    stop = threading.Event()

    def ticking() -> None:
        while not stop.wait(0.2):
            clocked.tick()

    ticker = threading.Thread(target=ticking, daemon=True)
    ticker.start()
    try:
        done = cli("run", "greet", "-p", "who=ann", "--wait")
    finally:
        stop.set()
        ticker.join()
    assert done.returncode == 0 and "succeeded" in done.stdout, done.stdout + done.stderr
    run_id = done.stdout.split()[1]
    assert "manual" in cli("runs", "greet").stdout
    assert "hello ann" in cli("output", "greet", run_id, "--log").stdout
    for args, message in [
        (("create", "x", str(script), "--cron", "0 6 * * *", "--every", "1h"), "give one of"),
        (("create", "x", str(script), "-p", "novalue"), "NAME=VALUE"),
        (("create", "x", str(script), "--every", "1s"), "at least 10s"),
        (("run", "nosuch"), "does not exist"),
    ]:
        bad = cli(*args)
        assert bad.returncode != 0 and message in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
    assert cli("rm", "greet").returncode == 0 and "no jobs" in cli("ls").stdout


def test_a_missed_deadline_and_a_stale_job_are_told(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,
) -> None:
    c = serving.http(inproc_user())

    def events() -> list[str]:
        return sorted(n["event"] for n in c.get("/services/lakehub/api/notices").json())

    clocked.clock.at = ms(2026, 12, 7, 5, 0)
    bad = c.post(API, json={"name": "d", "code_name": "d.py", "code": "1", "deadline": "7h"})
    assert bad.status_code == 400 and "bad deadline" in bad.text
    fragile = "import os\nraise SystemExit(0 if os.path.exists('/nonexistent') else 1)"
    make_job(
        c,
        "report",
        fragile,
        schedule="cron",
        expr="0 6 * * *",
        timezone="Europe/Paris",
        deadline="07:00",
    )
    clocked.clock.at = ms(2026, 12, 7, 6, 0, 1)
    drive(clocked, c, "report", ended)
    assert events() == ["failed"]  # 06:00's run failed; the deadline is not there yet
    clocked.clock.at = ms(2026, 12, 7, 7, 0, 1)
    clocked.tick()
    clocked.tick()
    assert events() == ["deadline", "failed"]  # once
    (deadline,) = [
        n for n in c.get("/services/lakehub/api/notices").json() if n["event"] == "deadline"
    ]
    assert "no successful run by 07:00 (Europe/Paris) on 2026-12-07" in deadline["message"]
    # two days on, no run has succeeded: twice its interval (a day) has passed
    clocked.clock.at = ms(2026, 12, 9, 5, 1)
    clocked.tick()
    drive(clocked, c, "report", ended)
    assert events().count("stale") == 1


def test_the_scheduler_s_own_loop_fires_a_schedule_and_a_run_asked_for(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
) -> None:
    """The control plane's loop, on the real clock: a job planned three seconds ahead starts
    on its own, its log there as soon as it is seen ended, and a run asked for starts at once
    (the loop is woken, not polled)."""
    import asyncio
    import threading
    from datetime import UTC, timedelta

    scheduler = serving.platform.jobs.scheduler
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> None:
        scheduler.start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    c = serving.http(inproc_user())
    try:
        at = datetime.now(UTC) + timedelta(seconds=3)
        make_job(c, "soon", "print('on time')", schedule="once", expr=at.isoformat())
        deadline = time.monotonic() + 60
        while not ended(runs_of(c, "soon")):
            assert time.monotonic() < deadline, runs_of(c, "soon")
            time.sleep(0.1)
        (run,) = runs_of(c, "soon")
        assert run["state"] == "succeeded" and run["trigger"] == "schedule"
        assert run["started_at"] >= run["planned_at"]  # never before its time (lateness: bench)
        log = c.get(f"{API}/soon/runs/{run['id']}/log.txt")  # there once the run is seen ended
        assert log.status_code == 200 and "on time" in log.text
        make_job(c, "asked", "print('asked')")
        t = time.monotonic()
        c.post(f"{API}/asked/runs", json={})
        while not ended(runs_of(c, "asked")):
            assert time.monotonic() - t < 60
            time.sleep(0.05)
        assert runs_of(c, "asked")[0]["state"] == "succeeded"
    finally:
        asyncio.run_coroutine_threadsafe(scheduler.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_removed_user_s_jobs_stop_and_go(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,
) -> None:
    from lakehub.server.models.base import Reader

    ann = inproc_user()
    c = serving.http(ann)
    make_job(c, "forever", "import time\ntime.sleep(600)")
    c.post(f"{API}/forever/runs", json={})
    (run,) = drive(clocked, c, "forever", lambda f: f[0]["state"] == "running")
    assert serving.admin_http().delete(f"/users/{ann}").status_code == 204
    assert serving.platform.jobs.owned(Reader(ann)) == []
    assert run["id"] not in clocked.attempts  # its process stopped, not left to the next pass


def test_a_link_left_in_a_runs_folder_is_not_read_for_its_owner(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,
    tmp_path: Path,
) -> None:
    """A job that swaps its ``log.txt`` for a link to a file it may not read (root's here; it
    could be another user's): the hub, root, does not follow it when it keeps the run's log."""
    secret = tmp_path / "roots-only"
    secret.write_text(f"not yours {secrets.token_hex(8)}")
    secret.chmod(0o600)
    c = serving.http(inproc_user())
    code = f"import os\nos.remove('log.txt')\nos.symlink({str(secret)!r}, 'log.txt')\n"
    make_job(c, "swap", code)
    assert c.post(f"{API}/swap/runs", json={}).status_code == 201
    (run,) = drive(clocked, c, "swap", ended)
    assert run["state"] == "succeeded", run
    log = c.get(f"{API}/swap/runs/{run['id']}/log.txt")
    assert secret.read_text() not in log.text


def test_a_runs_folder_is_removed_never_through_a_link(tmp_path: Path) -> None:
    """The hub (root) removes a run's folder below the owner's home: a link the owner planted
    above it (``.lakehub/jobs -> elsewhere``) is not followed, so what it points to stays."""
    from lakehub.server.compute.spark_procs import remove_beneath

    home, elsewhere = tmp_path / "home", tmp_path / "not-theirs"
    (elsewhere / "7-1-1").mkdir(parents=True)
    (elsewhere / "7-1-1" / "kept.txt").write_text("kept")
    (home / ".lakehub").mkdir(parents=True)
    (home / ".lakehub" / "jobs").symlink_to(elsewhere)
    remove_beneath(home / ".lakehub" / "jobs" / "7-1-1")
    assert (elsewhere / "7-1-1" / "kept.txt").read_text() == "kept"
    # a real folder there goes, with what is in it (a link inside it is removed, not followed)
    (home / ".lakehub" / "jobs").unlink()
    run = home / ".lakehub" / "jobs" / "7-1-1"
    run.mkdir(parents=True)
    (run / "out.txt").write_text("x")
    (run / "to-elsewhere").symlink_to(elsewhere)
    remove_beneath(run)
    assert not run.exists() and (elsewhere / "7-1-1" / "kept.txt").exists()
    remove_beneath(run)  # nothing there: nothing to do
