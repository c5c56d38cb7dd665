"""Telling a job's owner: a run that failed (its retries exhausted), was lost, planned times
missed while the hub was down, a deadline passed or no success for twice the interval (checked
in each scheduler pass: :meth:`Notices.alerts`) become notices, shown on the portal's Jobs page
until dismissed, POSTed as JSON to the job's webhook and mailed to its address, if it has them.

Webhooks: the URL is kept encrypted (it often carries a secret); only http(s), and only to
public addresses unless the host is listed in ``jobs_webhook_hosts`` (a user's job must not make
the hub call its own services); checked when set and again before each delivery. A delivery
that fails (no 2xx in 5 s) is retried with backoff, ``ATTEMPTS`` times in all, apart from the
scheduler's pass so a slow receiver never delays a run.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from datetime import UTC, datetime
from urllib.parse import urlsplit

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from lakehub.server.config import Settings
from lakehub.server.db import Database
from lakehub.server.jobs import schedule as sched
from lakehub.server.jobs.base import Clock, JobsError, Mailer
from lakehub.server.jobs.tables import Job, JobNotice, JobRun
from lakehub.server.schema import Instant, from_ms
from lakehub.server.vault import Vault

log = logging.getLogger("lakehub.jobs")
ATTEMPTS = 5
TIMEOUT_S = 5.0


class NoticeView(BaseModel):
    id: int
    job: str
    run_id: int | None
    event: str
    message: str
    created_at: Instant
    webhook: str  # none | pending | sent | failed
    email: str  # none | pending | sent | failed


class SmtpMailer(Mailer):
    def __init__(
        self, host: str, port: int, sender: str, starttls: bool, user: str, password: str
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.starttls, self.user, self.password = starttls, user, password

    @classmethod
    def of(cls, settings: Settings) -> SmtpMailer | None:
        """The mail server of the settings (``smtp_*``); None when ``smtp_host`` is empty."""
        if not settings.smtp_host:
            return None
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_from,
            settings.smtp_starttls,
            settings.smtp_user,
            password,
        )

    def send(self, to: str, subject: str, body: str) -> None:
        import smtplib
        from email.message import EmailMessage

        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, to, subject
        msg.set_content(body)
        with smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_S) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.user:
                smtp.login(self.user, self.password)
            smtp.send_message(msg)


class Notices:
    def __init__(
        self,
        db: Database,
        vault: Vault,
        allowed_hosts: list[str],
        clock: Clock,
        mailer: Mailer | None = None,
    ) -> None:
        self.db, self.vault, self.clock, self.mailer = db, vault, clock, mailer
        self.allowed = {h.lower() for h in allowed_hosts}

    # webhooks' addresses ------------------------------------------------------------------------
    def seal(self, url: str) -> str:
        """A webhook URL checked and encrypted for the table ("" clears it)."""
        if not url:
            return ""
        self.check(url)
        return self.vault.encrypt(url)

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise JobsError("a webhook is an http:// or https:// URL")
        host = parts.hostname.lower()
        if host in self.allowed:
            return
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            raise JobsError(f"the webhook's host {host!r} does not resolve") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                raise JobsError(
                    f"the webhook's host {host!r} is a local or private address: the hub does "
                    "not call those (an administrator may allow a host: jobs_webhook_hosts)"
                )

    # recording and showing -------------------------------------------------------------------
    def record(self, s: Session, job: Job, run_id: int | None, event: str, message: str) -> None:
        now = self.clock.now_ms()
        s.add(
            JobNotice(
                job_id=job.id,
                run_id=run_id,
                event=event,
                message=message,
                created_ms=now,
                dismissed=False,
                webhook="pending" if job.webhook else "none",
                attempts=0,
                next_ms=now if job.webhook else None,
                error="",
                email="pending" if job.email and self.mailer else "none",
                email_attempts=0,
            )
        )

    def of(self, owner: str, limit: int = 50) -> list[NoticeView]:
        with self.db.session() as s:
            rows = s.execute(
                select(JobNotice, Job.name)
                .join(Job, Job.id == JobNotice.job_id)
                .where(Job.owner == owner, JobNotice.dismissed.is_(False))
                .order_by(JobNotice.created_ms.desc(), JobNotice.id.desc())
                .limit(limit)
            ).all()
            return [
                NoticeView(
                    id=n.id,
                    job=name,
                    run_id=n.run_id,
                    event=n.event,
                    message=n.message,
                    created_at=from_ms(n.created_ms),
                    webhook=n.webhook,
                    email=n.email,
                )
                for n, name in rows
            ]

    def dismiss(self, owner: str, notice_id: int) -> None:
        with self.db.session() as s:
            row = s.execute(
                select(JobNotice)
                .join(Job, Job.id == JobNotice.job_id)
                .where(Job.owner == owner, JobNotice.id == notice_id)
            ).scalar_one_or_none()
            if row is None:
                raise JobsError(f"notice {notice_id} does not exist", 404)
            row.dismissed = True

    # alerts of the scheduler's pass ----------------------------------------------------------
    def alerts(self, s: Session, job: Job, now: int) -> None:
        """A deadline passed with no success since the one before (once per deadline); no
        success for twice the schedule's interval (once, until the next success)."""
        if job.deadline:
            due = sched.last_deadline(job.deadline, job.timezone, now)
            if due > job.deadline_checked_ms and due > job.created_ms:
                job.deadline_checked_ms = due
                if self._last_success(s, job, after=due - 86_400_000) is None:
                    self.record(
                        s,
                        job,
                        None,
                        "deadline",
                        f"no successful run by {job.deadline} ({job.timezone}) on "
                        f"{from_ms(due):%Y-%m-%d}",
                    )
        step = (
            None
            if job.stale_told
            else sched.step_ms(
                sched.Schedule(job.schedule, job.expr, job.timezone, job.start_ms), now
            )
        )
        if step and now - job.updated_ms > 2 * step:  # else nothing to look up
            last = max(self._last_success(s, job) or 0, job.updated_ms)  # or its last change
            if now - last > 2 * step:
                job.stale_told = True
                self.record(
                    s,
                    job,
                    None,
                    "stale",
                    f"no successful run since {from_ms(last):%Y-%m-%d %H:%M}Z (or a change), "
                    f"more than twice its interval ({step // 1000} s)",
                )

    @staticmethod
    def _last_success(s: Session, job: Job, after: int = 0) -> int | None:
        found: int | None = s.scalar(
            select(JobRun.ended_ms)
            .where(JobRun.job_id == job.id, JobRun.state == "succeeded", JobRun.ended_ms > after)
            .order_by(JobRun.ended_ms.desc())
            .limit(1)
        )
        return found

    # delivering ---------------------------------------------------------------------------------
    def deliver(self) -> int:
        """Send the webhooks and mails now due; how many went. Blocks (5 s a call at most)."""
        return self._webhooks() + self._mails()

    def _mails(self) -> int:
        if self.mailer is None:
            return 0
        now = self.clock.now_ms()
        with self.db.session() as s:
            rows = s.execute(
                select(JobNotice, Job)
                .join(Job, Job.id == JobNotice.job_id)
                .where(JobNotice.email == "pending")
                .order_by(JobNotice.created_ms)
                .limit(50)
            ).all()
            due = [
                (n.id, j.email, n.event, j.name, n.message)
                for n, j in rows
                if j.email and now >= n.created_ms + 5000 * (2**n.email_attempts - 1)
            ]
        sent = 0
        for notice_id, to, event, job, message in due:
            try:
                self.mailer.send(to, f"LakeHub: job {job} {event}", f"{message}\n")
                error = ""
            except OSError as err:
                error = f"{type(err).__name__}: {err}"
            sent += not error
            with self.db.session() as s:
                n = s.get(JobNotice, notice_id)
                if n is not None:
                    n.email_attempts += 1
                    if not error:
                        n.email = "sent"
                    elif n.email_attempts >= ATTEMPTS:
                        n.email = "failed"
                        log.warning("a job's mail gave up after %d attempts: %s", ATTEMPTS, error)
        return sent

    def _webhooks(self) -> int:
        import httpx

        from lakehub.client import tls_context

        now = self.clock.now_ms()
        with self.db.session() as s:
            due = s.execute(
                select(JobNotice, Job)
                .join(Job, Job.id == JobNotice.job_id)
                .where(JobNotice.webhook == "pending", JobNotice.next_ms <= now)
                .order_by(JobNotice.next_ms)
                .limit(50)
            ).all()
            todo = [(n.id, j.webhook, self._payload(n, j)) for n, j in due if j.webhook]
        sent = 0
        for notice_id, sealed, payload in todo:
            error = ""
            try:
                url = self.vault.decrypt(sealed)
                self.check(url)  # again: what a name resolves to may have changed
                r = httpx.post(
                    url,
                    json=payload,
                    timeout=TIMEOUT_S,
                    follow_redirects=False,
                    verify=tls_context(),
                )
                if not r.is_success:
                    error = f"answered {r.status_code}"
            except JobsError as err:
                error = str(err)
            except (httpx.HTTPError, ValueError) as err:
                error = f"{type(err).__name__}: {err}"
            sent += not error
            self._delivered(notice_id, error, now)
        return sent

    def _delivered(self, notice_id: int, error: str, now: int) -> None:
        with self.db.session() as s:
            n = s.get(JobNotice, notice_id)
            if n is None:
                return
            n.attempts += 1
            n.error = error
            if not error:
                n.webhook, n.next_ms = "sent", None
            elif n.attempts >= ATTEMPTS:
                n.webhook, n.next_ms = "failed", None
                log.warning("a job's webhook gave up after %d attempts: %s", n.attempts, error)
            else:
                n.next_ms = now + 5000 * 2 ** (n.attempts - 1)

    @staticmethod
    def _payload(n: JobNotice, job: Job) -> dict[str, object]:
        return {
            "job": job.name,
            "owner": job.owner,
            "run": n.run_id,
            "event": n.event,
            "message": n.message,
            "at": datetime.fromtimestamp(n.created_ms / 1000, UTC).isoformat(),
        }
