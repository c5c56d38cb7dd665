"""Rollouts: every change of what an endpoint serves, done without a failed request, and the
watcher that starts them when a replica dies or a followed alias moves.

A rollout of one set (``main`` or ``canary``) of an endpoint's replicas: record it; copy the
version's files from the lake into the owner's private folder; start the replicas in the model's
environment (its training environment from the version's lineage, else the endpoint's, else
``datascience``) at the endpoint's size; wait until each is ready and has answered a warm-up
request built from the model's input example; add them to the pool; only then drain the set
they replace (see ``gateway``). A failure stops the new replicas, leaves the old serving and
says why on the endpoint and the rollout. One rollout per endpoint at a time (its route's
lock); the watcher skips an endpoint whose rollout runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import select

from lakehub.server.db import Database
from lakehub.server.models.base import ArtifactStore, ModelsError, Reader
from lakehub.server.models.registry import Registry
from lakehub.server.models.tables import ModelVersion, RegisteredModel
from lakehub.server.notebooks.policy import Policies
from lakehub.server.notebooks.registry import Environments
from lakehub.server.schema import now_ms
from lakehub.server.serving.base import ReplicaSpec, Runner, ServingError
from lakehub.server.serving.gateway import Backend, Pool, _exchange
from lakehub.server.serving.tables import Endpoint, Rollout

T = TypeVar("T")
log = logging.getLogger("lakehub.serving")
READY_TIMEOUT = 180.0  # a replica's start: the environment's imports and the model's load
DRAIN_GRACE = 30.0
WATCH_EVERY = 1.0
DEFAULT_ENVIRONMENT = "datascience"


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Blocking work (the database, the lake, processes) in a worker thread."""
    return await anyio.to_thread.run_sync(lambda: fn(*args))


@dataclass
class Route:
    id: int
    bucket: str
    name: str
    owner: str
    creator: str
    pool: Pool = field(default_factory=Pool)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Plan:
    rollout_id: int
    endpoint_id: int
    role: str
    version: int
    owner: str
    specs: list[ReplicaSpec]
    files: tuple[str, str]
    share: int


class Rollouts:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        files: ArtifactStore,
        runner: Runner,
        environments: Environments,
        policies: Policies,
    ) -> None:
        self.db = db
        self.registry = registry
        self.files = files
        self.runner = runner
        self.environments = environments
        self.policies = policies
        self.by_id: dict[int, Route] = {}  # the endpoints' routes, by id
        self._tasks: set[asyncio.Task[None]] = set()
        self.pending: Counter[int] = Counter()  # rollouts asked for and not finished, by endpoint
        self._watch: asyncio.Task[None] | None = None

    def watch(self) -> None:
        """Start the watcher (once): at the control plane's start, or with the first endpoint
        made (an app served without its lifespan)."""
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watcher())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for task in list(self._tasks):
            task.cancel()

    def spawn(self, endpoint_id: int, role: str, version: int, reason: str, actor: str) -> None:
        self.pending[endpoint_id] += 1
        self.later(
            self._counted(endpoint_id, self._rollout(endpoint_id, role, version, reason, actor))
        )

    async def _counted(self, endpoint_id: int, rollout: Any) -> None:
        try:
            await rollout
        finally:
            self.pending[endpoint_id] -= 1
            if self.pending[endpoint_id] <= 0:
                del self.pending[endpoint_id]

    def later(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rollout(
        self, endpoint_id: int, role: str, version: int, reason: str, actor: str
    ) -> None:
        route = self.by_id.get(endpoint_id)
        if route is None:
            return
        async with route.lock:
            if self.by_id.get(endpoint_id) is not route:
                return  # deleted while waiting
            started: list[Backend] = []
            plan: _Plan | None = None
            try:
                plan = await run(self._plan, endpoint_id, role, version, reason, actor)
                if plan is None:
                    return
                await run(self._fetch, plan)
                for spec in plan.specs:
                    replica = await run(self.runner.start, spec)
                    started.append(Backend(replica, role, version))
                await asyncio.gather(*(self._until_ready(b) for b in started))
                await self._warm(started, plan.specs[0].name)
            except Exception as err:  # noqa: BLE001 (recorded on the endpoint, never raised)
                for b in started:
                    b.close_idle()
                    await run(self.runner.stop, b.replica, 1.0)
                if plan is None:  # refused while planned (its rollout was not kept): the
                    # endpoint says why rather than stay "deploying"
                    plan = _Plan(0, endpoint_id, role, version, "", [], ("", ""), 0)
                await run(self._finish, plan, f"{err}")
                log.warning("rollout of endpoint %s failed: %s", endpoint_id, err)
                return
            if self.by_id.get(endpoint_id) is not route:
                await self.retire(route, started)
                return
            old = [b for b in route.pool.backends if b.role == role]
            for b in started:
                b.ready = True
            route.pool.backends += started
            await run(self._finish, plan, "")
            if role == "canary":
                route.pool.share = plan.share
            await self.retire(route, old)

    async def retire(self, route: Route, backends: list[Backend]) -> None:
        await route.pool.drain(backends, DRAIN_GRACE)
        for b in backends:
            await run(self.runner.stop, b.replica)

    def _plan(
        self, endpoint_id: int, role: str, version: int, reason: str, actor: str
    ) -> _Plan | None:
        with self.db.session() as s:
            row = s.get(Endpoint, endpoint_id)
            if row is None:
                return None
            mv = s.scalar(
                select(ModelVersion).where(
                    ModelVersion.model_id == row.model_id, ModelVersion.version == version
                )
            )
            rollout = Rollout(
                endpoint_id=row.id,
                role=role,
                version=version,
                replicas=row.replicas if role == "main" else 1,
                reason=reason,
                actor=actor,
                state="starting",
                message="",
                started_ms=now_ms(),
            )
            s.add(rollout)
            s.flush()
            plan = _Plan(rollout.id, endpoint_id, role, version, row.creator, [], ("", ""), 0)
            if role == "canary":
                plan.share = row.canary_share
            if mv is None:
                raise ServingError(f"version {version} of the model no longer exists", 404)
            lineage = json.loads(mv.lineage or "{}")
            env_name = row.environment or lineage.get("environment") or DEFAULT_ENVIRONMENT
            env = self.environments.path(env_name)
            if env is None:
                raise ServingError(f"the environment {env_name!r} is not built (yet)", 409)
            size = next((z for z in self.policies.sizes() if z.name == row.size), None)
            if size is None:
                raise ServingError(f"the size {row.size!r} no longer exists", 409)
            model = s.get(RegisteredModel, row.model_id)
            assert model is not None  # an endpoint goes with its model (on delete cascade)
            plan.files = (model.bucket, Registry.prefix(row.model_id, version))
            tag = f"{row.id}-{role}-{version}-{secrets.token_hex(3)}"
            files_dir = self.runner.files_dir(row.creator, tag)
            plan.specs = [
                ReplicaSpec(
                    key=f"serve-{tag}-{i}",
                    owner=row.creator,
                    python=env / "bin" / "python",
                    model_dir=files_dir,
                    name=row.name,
                    version=version,
                    cpus=size.cpus,
                    memory=size.memory,
                    batching=row.batching,
                )
                for i in range(rollout.replicas)
            ]
            return plan

    def _fetch(self, plan: _Plan) -> None:
        bucket, prefix = plan.files
        who = Reader(plan.owner, admin=True)
        try:
            self.files.download_tree(who, bucket, prefix, plan.specs[0].model_dir)
        except ModelsError as err:
            raise ServingError(f"cannot read the version's files: {err}", err.status) from None

    async def _until_ready(self, b: Backend) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not self.runner.alive(b.replica):
                why = await run(self.runner.why, b.replica)
                raise ServingError(f"a replica stopped while starting:\n{why}", 500)
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
                status, _, _ = await _exchange(b, b"GET", b"/v2/health/ready", [], b"")
                if status == 200:
                    return
            await asyncio.sleep(0.1)
        raise ServingError(f"a replica was not ready in {READY_TIMEOUT:.0f} s", 504)

    async def _warm(self, backends: list[Backend], name: str) -> None:
        """Each new replica answers a request built from the model's input example."""
        status, _, body = await _exchange(backends[0], b"GET", b"/lakehub/example", [], b"")
        if status != 200 or body in (b"{}", b""):
            return  # no example: readiness is all there is
        path = f"/v2/models/{name}/infer".encode()
        for b in backends:
            status, _, out = await _exchange(
                b, b"POST", path, [(b"Content-Type", b"application/json")], body
            )
            if status != 200:
                raise ServingError(f"the warm-up request failed ({status}): {out[:500]!r}", 500)

    def _finish(self, plan: _Plan, error: str) -> None:
        with self.db.session() as s:
            rollout = s.get(Rollout, plan.rollout_id)
            if rollout is not None:
                rollout.state = "failed" if error else "done"
                rollout.message = error[:4000]
                rollout.ended_ms = now_ms()
            row = s.get(Endpoint, plan.endpoint_id)
            if row is None:
                return
            if error:
                row.message = f"version {plan.version} was not deployed: {error}"[:4000]
                if row.version is None and plan.role == "main":
                    row.status = "failed"
            elif plan.role == "main":
                row.version, row.status, row.message = plan.version, "serving", ""
            else:
                row.canary_version, row.message = plan.version, ""
            row.updated_ms = now_ms()

    # the watcher ------------------------------------------------------------------------------
    async def _watcher(self) -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY)
            try:
                await self._check()
            except Exception as err:  # noqa: BLE001 (the next round tries again)
                log.warning("serving watcher: %s", err)

    async def _check(self) -> None:
        for route in list(self.by_id.values()):
            if route.lock.locked():
                continue
            for role in ("main", "canary"):
                dead = [
                    b
                    for b in route.pool.backends
                    if b.role == role and b.ready and not self.runner.alive(b.replica)
                ]
                if dead:
                    for b in dead:
                        b.ready = False
                    self.spawn(route.id, role, dead[0].version, "replica exited", "lakehub")
        for endpoint_id, role, version in await run(self._moved):
            moved = self.by_id.get(endpoint_id)
            if moved is not None and not moved.lock.locked():
                self.spawn(endpoint_id, role, version, "alias moved", "lakehub")

    def _moved(self) -> list[tuple[int, str, int]]:
        """Endpoints following an alias that now names another version than the one served."""
        out = []
        with self.db.session() as s:
            rows = s.scalars(select(Endpoint).where(Endpoint.follow.is_(True))).all()
        for row in rows:
            for role, ref, served in (
                ("main", row.ref, row.version),
                ("canary", row.canary_ref, row.canary_version),
            ):
                if ref.startswith("@") and served is not None:
                    now = self.registry.version_of(row.model_id, ref)
                    if now is not None and now != served:
                        out.append((row.id, role, now))
        return out
