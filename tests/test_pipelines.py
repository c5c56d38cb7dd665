"""Pipelines, backfills, retention and mailed notices (in-process layer, the scheduler on a
clock the tests set, real attempts): steps run once per planned time after every job they name
has succeeded for it, and go on from a failed step run again with its fix; a backfill plans a
range and keeps to its parallelism; a job keeps its newest runs and their outputs only; a
failure is mailed through an SMTP server on 127.0.0.1; the graph is refused when it would not be
a DAG of the owner's jobs."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from endpoints_kit import serving  # noqa: F401 (the environment, the accounts removed after)
from inproc import InProc
from test_jobs import API, MIN, clocked, drive, ended, make_job, ms, runs_of  # noqa: F401

STEP = "import lakehub.jobs as j, sys\nprint('PLANNED', j.planned_at())\n"


def logs(c: Any, name: str) -> list[str]:
    return [c.get(f"{API}/{name}/runs/{r['id']}/log.txt").text for r in runs_of(c, name)]


def test_a_pipeline_runs_each_step_once_and_goes_on_from_the_failed_one(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,  # noqa: F811
) -> None:
    c = serving.http(inproc_user())
    make_job(c, "extract", STEP)
    make_job(c, "clean", STEP + "raise SystemExit('bad row 7')", after=["extract"])
    report = make_job(c, "report", STEP, after=["extract", "clean"])
    assert report["after"] == ["clean", "extract"]
    assert c.get(f"{API}/extract").json()["then"] == ["clean", "report"]
    # not a DAG of your jobs: refused with the reason
    for after, message in [
        (["report"], "cycle"),
        (["clean", "nosuch"], "no job of yours"),
        (["extract"], "itself"),
    ]:
        r = c.patch(f"{API}/extract", json={"after": after})
        assert r.status_code == 400 and message in r.text, r.text
    r = c.delete(f"{API}/extract")
    assert r.status_code == 409 and "clean, report" in r.text
    # a run of the first step: the next one follows for the same planned time, and fails
    first = c.post(f"{API}/extract/runs", json={}).json()
    drive(clocked, c, "clean", ended)
    (cleaned,) = runs_of(c, "clean")
    assert cleaned["state"] == "failed" and cleaned["trigger"] == "after"
    assert cleaned["planned_at"] == first["planned_at"]
    assert runs_of(c, "report") == []  # one of its upstreams failed
    # the fix uploaded, the failed step run again: the pipeline goes on, each step once
    r = c.patch(f"{API}/clean", json={"code_name": "clean.py", "code": STEP})
    assert r.status_code == 200, r.text
    again = c.post(f"{API}/clean/runs/{cleaned['id']}/rerun").json()
    assert again["state"] == "planned" and again["id"] == cleaned["id"]
    drive(clocked, c, "report", ended)
    assert [r["state"] for r in runs_of(c, "clean")] == ["succeeded"]
    (reported,) = runs_of(c, "report")
    assert reported["state"] == "succeeded" and reported["trigger"] == "after"
    planned = first["planned_at"].replace("Z", "+00:00")
    for name in ("extract", "clean", "report"):  # every step saw the time they share
        assert all(f"PLANNED {planned}" in text for text in logs(c, name)), (name, logs(c, name))
    r = c.post(f"{API}/report/runs/{reported['id']}/rerun")
    assert r.status_code == 400 and "succeeded" in r.text
    # another user can neither run a step again, backfill it, nor name it in a pipeline
    e = serving.http(inproc_user())
    days = {"start": "2026-11-01T00:00Z", "end": "2026-11-02T00:00Z"}
    for path, body in [(f"/clean/runs/{cleaned['id']}/rerun", None), ("/extract/backfill", days)]:
        r = e.post(API + path, json=body)
        assert r.status_code == 404 and "does not exist" in r.text, (path, r.text)
    r = e.post(API, json={"name": "mine", "code_name": "m.py", "code": "1", "after": ["extract"]})
    assert r.status_code == 400 and "no job of yours" in r.text


def test_a_backfill_plans_a_range_and_keeps_to_its_parallelism(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,  # noqa: F811
) -> None:
    import lakehub.jobs as jobs
    from lakehub.client import LakeHubError, connect

    user = inproc_user()
    c = serving.http(user)
    client = connect(serving.url, serving.token(user))
    make_job(
        c,
        "daily",
        "import time\ntime.sleep(1)\n" + STEP,
        schedule="cron",
        expr="0 3 * * *",
        concurrency="allow",
        backfill_parallelism=2,
    )
    make_job(c, "after-daily", STEP, after=["daily"])
    n = jobs.backfill("daily", "2026-11-01T00:00Z", "2026-11-05T23:59Z", client=client)
    assert n == 5
    # again over an overlapping range: only the new times
    assert jobs.backfill("daily", "2026-11-05T00:00Z", "2026-11-06T23:59Z", client=client) == 1
    most = 0
    for _ in range(600):  # bounded: 6 runs of 1 s, two at a time
        clocked.tick()
        found = runs_of(c, "daily")
        most = max(most, sum(r["state"] == "running" for r in found))
        steps = runs_of(c, "after-daily")
        if ended(found) and len(steps) == 6 and ended(steps):
            break
        time.sleep(0.05)
    assert most == 2, most
    daily = runs_of(c, "daily")
    assert [r["planned_at"][:10] for r in daily] == [f"2026-11-0{d}" for d in range(1, 7)]
    assert {r["trigger"] for r in daily} == {"backfill"}
    assert {r["state"] for r in daily + runs_of(c, "after-daily")} == {"succeeded"}
    for bad, message in [
        (("2026-11-05T00:00Z", "2026-11-01T00:00Z"), "end comes after"),
        (("2020-01-01T00:00Z", "2026-01-01T00:00Z"), "at most 1000"),
    ]:
        with pytest.raises(LakeHubError, match=message):
            jobs.backfill("daily", *bad, client=client)
    with pytest.raises(LakeHubError, match="cron or interval"):
        jobs.backfill("after-daily", "2026-11-01T00:00Z", "2026-11-02T00:00Z", client=client)


def test_a_job_keeps_its_newest_runs_and_their_outputs_only(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,  # noqa: F811
) -> None:
    c = serving.http(inproc_user())
    make_job(c, "kept", "print('hello')", keep_runs=2)
    ids = []
    for _ in range(3):
        ids.append(c.post(f"{API}/kept/runs", json={}).json()["id"])
        clocked.clock.at += 1000
        drive(clocked, c, "kept", ended)
    assert [r["id"] for r in runs_of(c, "kept")] == ids[1:]
    assert c.get(f"{API}/kept/runs/{ids[0]}/log.txt").status_code == 404
    assert "hello" in c.get(f"{API}/kept/runs/{ids[2]}/log.txt").text
    r = c.patch(f"{API}/kept", json={"keep_runs": 0})
    assert r.status_code == 400 and "keep_runs" in r.text


class _SMTP(socketserver.StreamRequestHandler):
    """Enough of SMTP (RFC 5321) to receive a mail: what it got goes to ``server.mails``."""

    def handle(self) -> None:
        self.wfile.write(b"220 tests ESMTP\r\n")
        rcpt: list[str] = []
        while line := self.rfile.readline(65536):
            verb = line[:4].upper()
            if verb == b"DATA":
                self.wfile.write(b"354 go on\r\n")
                body = b""
                while (part := self.rfile.readline(65536)) not in (b".\r\n", b""):
                    body += part
                self.server.mails.append((rcpt, body.decode()))  # type: ignore[attr-defined]
                self.wfile.write(b"250 kept\r\n")
            elif verb == b"RCPT":
                rcpt.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                self.wfile.write(b"250 ok\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:  # EHLO, HELO, MAIL, RSET, NOOP
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def mailbox(serving: InProc) -> Iterator[list[tuple[list[str], str]]]:  # noqa: F811
    """An SMTP server on 127.0.0.1, the platform's notices sent through it for the test."""
    from lakehub.server.jobs.notices import SmtpMailer

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTP)
    server.mails = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    notices = serving.platform.jobs.scheduler.notices
    port = server.server_address[1]
    notices.mailer = SmtpMailer("127.0.0.1", port, "lakehub@tests", False, "", "")
    try:
        yield server.mails  # type: ignore[attr-defined]
    finally:
        notices.mailer = None
        server.shutdown()
        server.server_close()


def test_a_failure_is_mailed(
    serving: InProc,  # noqa: F811
    inproc_user: Any,
    clocked: Any,  # noqa: F811
    mailbox: list[tuple[list[str], str]],
) -> None:
    c = serving.http(inproc_user())
    r = c.post(API, json={"name": "x", "code_name": "x.py", "code": "1", "email": "not-mail"})
    assert r.status_code == 400 and "not an email address" in r.text
    make_job(c, "alarm", "raise SystemExit('the feed is empty')", email="ops@example.org")
    c.post(f"{API}/alarm/runs", json={})
    drive(clocked, c, "alarm", ended)
    (notice,) = [n for n in c.get("/services/lakehub/api/notices").json() if n["job"] == "alarm"]
    assert notice["email"] == "pending"
    assert clocked.notices.deliver() == 1
    ((to, mail),) = mailbox
    assert to == ["ops@example.org"] and "Subject: LakeHub: job alarm failed" in mail
    assert "the job's code failed" in mail
    (notice,) = [n for n in c.get("/services/lakehub/api/notices").json() if n["job"] == "alarm"]
    assert notice["email"] == "sent"
    assert clocked.notices.deliver() == 0  # once
