"""Deleted runs, experiments and versions are freed for real once the grace period has passed:
their rows go, and their files leave the lake (MLflow's own server leaves both behind until an
operator runs ``mlflow gc``). Until then a run or an experiment can be restored."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import delete, select

from lakehub.server.db import Database
from lakehub.server.models.base import ArtifactStore
from lakehub.server.models.tables import Experiment, Retention, Run, Trash
from lakehub.server.models.tracking import KEY_PREFIX
from lakehub.server.schema import now_ms

log = logging.getLogger("lakehub.models")


class Purge:
    def __init__(self, db: Database, files: ArtifactStore, grace_ms: int) -> None:
        self.db = db
        self.files = files
        self.grace_ms = grace_ms
        self.interval = max(1.0, min(60.0, grace_ms / 4000))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set_retention(self, bucket: str, run_days: int | None, actor: str) -> None:
        """Keep ``bucket``'s finished runs ``run_days`` days (``None``: for ever)."""
        with self.db.session() as s:
            row = s.get(Retention, bucket)
            if run_days is None:
                if row is not None:
                    s.delete(row)
                return
            if row is None:
                s.add(
                    Retention(bucket=bucket, run_days=run_days, set_by=actor, updated_ms=now_ms())
                )
            else:
                row.run_days, row.set_by, row.updated_ms = run_days, actor, now_ms()

    def retention(self, bucket: str) -> int | None:
        with self.db.session() as s:
            row = s.get(Retention, bucket)
            return row.run_days if row else None

    def expire(self) -> int:
        """Delete the finished runs older than their bucket's retention; how many."""
        now, count = now_ms(), 0
        with self.db.session() as s:
            for policy in s.scalars(select(Retention)).all():
                cutoff = now - policy.run_days * 86_400_000
                old = s.scalars(
                    select(Run)
                    .join(Experiment, Experiment.id == Run.experiment_id)
                    .where(
                        Experiment.bucket == policy.bucket,
                        Run.lifecycle == "active",
                        Run.status != "RUNNING",
                        Run.start_ms < cutoff,
                    )
                ).all()
                for run in old:
                    run.lifecycle, run.deleted_ms = "deleted", now
                count += len(old)
        return count

    def sweep(self) -> int:
        """Expire what retention says, free what is due; the bytes freed."""
        self.expire()
        now, freed = now_ms(), 0
        before = now - self.grace_ms
        with self.db.session() as s:
            due = [
                (t.id, t.bucket, t.prefix)
                for t in s.scalars(select(Trash).where(Trash.due_ms <= now))
            ]
            runs = s.execute(
                select(Run.id, Experiment.id, Experiment.bucket)
                .join(Experiment, Experiment.id == Run.experiment_id)
                .where(Run.lifecycle == "deleted", Run.deleted_ms <= before)
            ).all()
            exps = s.execute(
                select(Experiment.id, Experiment.bucket).where(
                    Experiment.lifecycle == "deleted", Experiment.deleted_ms <= before
                )
            ).all()
        for tid, bucket, prefix in due:
            freed += self.files.delete_tree(bucket, prefix)
            with self.db.session() as s:
                s.execute(delete(Trash).where(Trash.id == tid))
        for rid, eid, bucket in runs:
            freed += self.files.delete_tree(bucket, f"{KEY_PREFIX}{eid}/{rid}/")
            with self.db.session() as s:
                s.execute(delete(Run).where(Run.id == rid, Run.lifecycle == "deleted"))
        for eid, bucket in exps:
            freed += self.files.delete_tree(bucket, f"{KEY_PREFIX}{eid}/")
            with self.db.session() as s:
                s.execute(
                    delete(Experiment).where(
                        Experiment.id == eid, Experiment.lifecycle == "deleted"
                    )
                )
        return freed

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lakehub-models-purge", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                freed = self.sweep()
                if freed:
                    log.info("freed %d bytes of deleted runs, experiments and versions", freed)
            except Exception as err:  # the lake may be restarting: the next pass frees it
                log.warning("cannot free deleted runs' files yet: %s", err)
