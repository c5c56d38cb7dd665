"""The hub's record of background tasks (see :mod:`lakehub.compute.tasks`): owner, state,
times, error. Only the owner (or an administrator) sees or changes a task."""

from __future__ import annotations

import secrets

from pydantic import BaseModel
from sqlalchemy import select

from lakehub.server.db import Task, User, utcnow
from lakehub.server.identity.users import Directory, UserError
from lakehub.server.schema import Instant

STATES = ("queued", "running", "done", "failed")


class TaskView(BaseModel):
    id: str
    owner: str
    name: str
    state: str
    error: str
    result: str
    created_at: Instant
    started_at: Instant | None
    finished_at: Instant | None


def _view(row: Task, owner: str) -> TaskView:
    return TaskView(
        id=row.id,
        owner=owner,
        name=row.name,
        state=row.state,
        error=row.error,
        result=row.result,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


class TaskRecords:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.db = directory.db

    def create(self, owner: str, name: str) -> TaskView:
        with self.db.session() as s:
            user = self.directory.get(s, owner)
            row = Task(id=secrets.token_hex(8), owner_id=user.id, name=name[:200])
            s.add(row)
            s.flush()
            return _view(row, owner)

    def _row(self, s: object, task_id: str, viewer: str, admin: bool) -> tuple[Task, str]:
        found = s.execute(  # type: ignore[attr-defined]
            select(Task, User.name).join(User, User.id == Task.owner_id).where(Task.id == task_id)
        ).first()
        if found is None or (found[1] != viewer and not admin):
            raise UserError(f"no task {task_id!r}", 404)
        return found[0], found[1]

    def update(
        self, task_id: str, viewer: str, admin: bool, state: str, error: str = "", result: str = ""
    ) -> TaskView:
        if state not in STATES:
            raise UserError(f"state must be one of {', '.join(STATES)}")
        with self.db.session() as s:
            row, owner = self._row(s, task_id, viewer, admin)
            if row.state in ("done", "failed"):
                raise UserError(f"task {task_id} is already {row.state}", 409)
            row.state = state
            if state == "running":
                row.started_at = utcnow()
            if state in ("done", "failed"):
                row.finished_at = utcnow()
                row.error, row.result = error[-4000:], result[:1024]
            return _view(row, owner)

    def get(self, task_id: str, viewer: str, admin: bool) -> TaskView:
        with self.db.session() as s:
            return _view(*self._row(s, task_id, viewer, admin))

    def list(self, viewer: str, admin: bool) -> list[TaskView]:
        with self.db.session() as s:
            q = select(Task, User.name).join(User, User.id == Task.owner_id)
            if not admin:
                q = q.where(User.name == viewer)
            return [_view(t, o) for t, o in s.execute(q.order_by(Task.created_at.desc()))]
