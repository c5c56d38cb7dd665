"""Deleted runs, experiments and versions are freed for real once the grace period has passed:
their rows go, and their files leave the lake (MLflow's own server leaves both behind until an
operator runs ``mlflow gc``). Until then a run or an experiment can be restored."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import delete, select

from lakehub.server.db import Database
from lakehub.server.models.base import ArtifactStore
from lakehub.server.models.tables import Experiment, Run, Trash
from lakehub.server.models.tracking import KEY_PREFIX, now_ms

log = logging.getLogger("lakehub.models")


class Purge:
    def __init__(self, db: Database, files: ArtifactStore, grace_ms: int) -> None:
        self.db = db
        self.files = files
        self.grace_ms = grace_ms
        self.interval = max(1.0, min(60.0, grace_ms / 4000))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> int:
        """Free what is due; the bytes freed."""
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
