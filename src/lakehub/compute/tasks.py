"""Background tasks: ``lakehub.compute.submit(fn, *args)`` runs ``fn`` in a process of its own
and records its state in the hub, so the notebook that submitted it may close.

    t = lakehub.compute.submit(reduce_stream, "audio")
    t.id, t.state                     # queued | running | done | failed
    lakehub.compute.tasks.get(t.id).result(timeout=600)   # later, from anywhere

The call (pickled with cloudpickle when present) and its result live in your bucket under
``.lakehub/tasks/<id>/``; the state, times and error are in the hub (``GET /api/tasks``). The
task runs where it was submitted (a notebook server: as you, within its size's limits).
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import subprocess
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

from lakehub.client import LakeHubError

if TYPE_CHECKING:
    from lakehub.client import Client

FINAL = ("done", "failed")


def _client(client: Client | None) -> Client:
    from lakehub.client import default

    return default(client)


def _dumps(obj: Any) -> bytes:
    try:
        import cloudpickle

        return bytes(cloudpickle.dumps(obj))
    except ImportError:
        return pickle.dumps(obj)


def _key(task_id: str, what: str) -> str:
    return f".lakehub/tasks/{task_id}/{what}.pkl"


class Task:
    def __init__(self, client: Client, info: dict[str, Any]) -> None:
        self._client = client
        self.info = info
        self.id: str = info["id"]

    def __repr__(self) -> str:
        return f"Task({self.id!r}, {self.info.get('name')!r}, {self.info['state']})"

    def refresh(self) -> dict[str, Any]:
        self.info = self._client.request("GET", f"/api/tasks/{self.id}")
        return self.info

    @property
    def state(self) -> str:
        return str(self.refresh()["state"])

    def wait(self, timeout: float = 3600, interval: float = 0.5) -> str:
        deadline = time.monotonic() + timeout
        while self.state not in FINAL:
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {self.id} is still {self.info['state']}")
            time.sleep(interval)
        return str(self.info["state"])

    def result(self, timeout: float = 3600) -> Any:
        """The function's return value (waits); a failed task raises with its error."""
        if self.wait(timeout) == "failed":
            raise LakeHubError(500, f"task {self.id} failed: {self.info['error']}")
        creds = self._client.lake.credentials()
        body = creds.boto3_client().get_object(Bucket=creds.bucket, Key=_key(self.id, "result"))
        return pickle.loads(body["Body"].read())  # noqa: S301 (your own bucket, your own task)


def submit(
    fn: Any, *args: Any, name: str | None = None, client: Client | None = None, **kwargs: Any
) -> Task:
    c = _client(client)
    info = c.request("POST", "/api/tasks", json={"name": name or getattr(fn, "__name__", "task")})
    creds = c.lake.credentials()
    creds.boto3_client().put_object(
        Bucket=creds.bucket, Key=_key(info["id"], "call"), Body=_dumps((fn, args, kwargs))
    )
    env = {**os.environ, "LAKEHUB_API_URL": c.url, "LAKEHUB_TOKEN": c.token}
    subprocess.Popen(
        [sys.executable, "-m", "lakehub.compute.tasks", info["id"]],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return Task(c, info)


def get(task_id: str, client: Client | None = None) -> Task:
    c = _client(client)
    return Task(c, c.request("GET", f"/api/tasks/{task_id}"))


def list(client: Client | None = None) -> builtins.list[Task]:  # noqa: A001
    c = _client(client)
    return [Task(c, info) for info in c.request("GET", "/api/tasks")]


def run(task_id: str) -> int:
    """The task's own process: load the call, run it, store the result, record the state."""
    c = _client(None)
    c.request("PATCH", f"/api/tasks/{task_id}", json={"state": "running"})
    creds = c.lake.credentials()
    s3 = creds.boto3_client()
    try:
        body = s3.get_object(Bucket=creds.bucket, Key=_key(task_id, "call"))["Body"].read()
        fn, args, kwargs = pickle.loads(body)  # noqa: S301 (written by the task's owner)
        value = fn(*args, **kwargs)
        out = io.BytesIO(_dumps(value))
        s3.put_object(Bucket=creds.bucket, Key=_key(task_id, "result"), Body=out.getvalue())
    except BaseException as err:
        tail = "".join(traceback.format_exception_only(type(err), err)).strip()
        c.request("PATCH", f"/api/tasks/{task_id}", json={"state": "failed", "error": tail})
        return 1
    c.request(
        "PATCH",
        f"/api/tasks/{task_id}",
        json={"state": "done", "result": f"s3://{creds.bucket}/{_key(task_id, 'result')}"},
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
