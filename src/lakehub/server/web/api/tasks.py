"""Background tasks (JSON API): what ``lakehub.compute.submit`` records."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from lakehub.server.compute.task_records import TaskRecords, TaskView
from lakehub.server.web.deps import State, User

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


class NewTask(BaseModel):
    name: str = Field(default="task", max_length=200)


class TaskUpdate(BaseModel):
    state: str
    error: str = ""
    result: str = ""


@router.post("", status_code=201)
async def create(body: NewTask, who: User, state: State) -> TaskView:
    if who.local:
        raise HTTPException(400, "tasks belong to hub users: submit them as one")
    return await state.run(TaskRecords(state.directory).create, who.name, body.name)


@router.get("")
async def list_tasks(who: User, state: State) -> list[TaskView]:
    return await state.run(TaskRecords(state.directory).list, who.name, who.admin)


@router.get("/{task_id}")
async def get(task_id: str, who: User, state: State) -> TaskView:
    return await state.run(TaskRecords(state.directory).get, task_id, who.name, who.admin)


@router.patch("/{task_id}")
async def update(task_id: str, body: TaskUpdate, who: User, state: State) -> TaskView:
    """The task's process reports its state (with its owner's token)."""
    return await state.run(
        lambda: TaskRecords(state.directory).update(
            task_id, who.name, who.admin, body.state, body.error, body.result
        )
    )
