"""Endpoints: a registered model version served by replicas, changed without a failed request.

Rules:

- An endpoint belongs to a bucket (its creator's home or a space's), as a model does: whoever
  reads the bucket may call it and see it, whoever writes it may change it. Its name is
  ``name`` or ``owner.name``; its address is ``serving/<owner>/<name>/``.
- Every change of what serves (deploy, a new version or alias, a new number of replicas, a
  restart) is a *rollout*: new replicas start beside the old, pass their readiness probe and a
  warm-up request built from the model's input example, join the pool, and only then do the
  old ones drain (no new requests; stopped once their last request is answered, or after
  ``DRAIN_GRACE``). A rollout that fails leaves the old replicas serving and says why on the
  endpoint. One rollout per endpoint at a time; the next waits for it.
- A canary is a second set of replicas (``role`` canary) getting ``share`` percent of
  requests. Promoting it is moving the alias the endpoint follows: with ``follow`` on, a move of
  either alias rolls the matching set out to the alias's new version (checked every second).
- A replica that dies is replaced by a rollout of its set (reason ``replica exited``).
- Application tokens (``lhe_...``) open one endpoint; only their SHA-256 is kept.

Blocking work (the database, the lake, processes) runs in worker threads; pools and rollouts
live on the control plane's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import select

from lakehub.server.db import Database
from lakehub.server.identity.users import home_bucket
from lakehub.server.models.base import ArtifactStore, ModelsError, Reader
from lakehub.server.models.owners import SEP, Access, owner_of
from lakehub.server.models.registry import Deployable, Registry
from lakehub.server.models.tables import ModelVersion, RegisteredModel
from lakehub.server.notebooks.policy import Policies
from lakehub.server.notebooks.registry import Environments
from lakehub.server.serving.base import ReplicaSpec, Runner, ServingError
from lakehub.server.serving.gateway import Backend, Pool, _exchange
from lakehub.server.serving.tables import Endpoint, EndpointToken, Rollout
from lakehub.server.serving.views import EndpointDetail, EndpointView, RolloutView, TokenView

T = TypeVar("T")
log = logging.getLogger("lakehub.serving")
NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_REPLICAS = 16
READY_TIMEOUT = 180.0  # a replica's start: the environment's imports and the model's load
DRAIN_GRACE = 30.0
WATCH_EVERY = 1.0
TOKEN_PREFIX = "lhe_"
DEFAULT_ENVIRONMENT = "datascience"


def now_ms() -> int:
    return int(time.time() * 1000)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Route:
    id: int
    bucket: str
    name: str
    owner: str
    pool: Pool = field(default_factory=Pool)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Endpoints:
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
        self.routes: dict[tuple[str, str], Route] = {}  # (owner, name) -> route
        self.by_id: dict[int, Route] = {}
        self.tokens: dict[str, int] = {}  # digest -> endpoint id
        self._grants: dict[tuple[str, str], bool] = {}  # (caller, bucket) -> may call
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        db.on_change.append(self._grants.clear)  # a grant changed: ask again

    # life -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Stop what a previous run left, then roll every endpoint out again; watch."""
        if self._watch is not None:
            return
        self._watching()
        stopped = await _run(self.runner.stop_leftovers)
        if stopped:
            log.info("stopped %d replicas a previous run left", stopped)
        rows = await _run(self._all_rows)
        for row in rows:
            self._add_route(row)
            if row.version is not None:
                self._spawn(row.id, "main", row.version, "hub started", "lakehub")
            if row.canary_version is not None:
                self._spawn(row.id, "canary", row.canary_version, "hub started", "lakehub")
        self.tokens = await _run(self._live_tokens)

    def _watching(self) -> None:
        """The watcher runs from the start, or from the first endpoint made (an app served
        without its lifespan)."""
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watcher())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for task in list(self._tasks):
            task.cancel()
        for route in list(self.by_id.values()):
            for b in route.pool.backends:
                b.close_idle()
                await _run(self.runner.stop, b.replica, 2.0)

    def _all_rows(self) -> list[Endpoint]:
        with self.db.session() as s:
            return list(s.scalars(select(Endpoint)))

    def _live_tokens(self) -> dict[str, int]:
        with self.db.session() as s:
            rows = s.execute(
                select(EndpointToken.digest, EndpointToken.endpoint_id).where(
                    EndpointToken.revoked_ms.is_(None)
                )
            )
            return {d: e for d, e in rows}

    def _add_route(self, row: Endpoint) -> Route:
        route = Route(row.id, row.bucket, row.name, owner_of(row.bucket))
        self.routes[(owner_of(row.bucket), row.name)] = route
        self.by_id[row.id] = route
        return route

    # the data plane's questions ---------------------------------------------------------------
    def route(self, owner: str, name: str) -> Route | None:
        return self.routes.get((owner, name))

    def token_opens(self, token: str, route: Route) -> bool:
        return token.startswith(TOKEN_PREFIX) and self.tokens.get(digest(token)) == route.id

    def known(self, who: Reader, route: Route) -> bool | None:
        """Whether ``who`` may call, when known without the database (else None)."""
        if who.admin or route.bucket == home_bucket(who.name):
            return True
        return self._grants.get((who.name, route.bucket))

    def may_call(self, who: Reader, route: Route) -> bool:
        """Reads the endpoint's bucket (remembered until a grant changes). Blocks."""
        known = self.known(who, route)
        if known is None:
            with self.db.session() as s:
                known = self._grants[(who.name, route.bucket)] = Access.of(s, who).can_read(
                    route.bucket
                )
        return known

    # management -------------------------------------------------------------------------------
    async def create(
        self,
        who: Reader,
        name: str,
        model: str,
        replicas: int = 1,
        size: str | None = None,
        environment: str = "",
        follow: bool = False,
        batching: bool = False,
    ) -> EndpointView:
        row, dep = await _run(
            self._create_row, who, name, model, replicas, size, environment, follow, batching
        )
        self._add_route(row)
        self._watching()
        self._spawn(row.id, "main", dep.version, "deploy", who.name)
        return await _run(self.view, who, self._shown(who, row))

    def _create_row(
        self,
        who: Reader,
        given: str,
        model: str,
        replicas: int,
        size: str | None,
        environment: str,
        follow: bool,
        batching: bool,
    ) -> tuple[Endpoint, Deployable]:
        _check_replicas(replicas)
        dep = self._deployable(who, model)
        size = self._size(who, size)
        with self.db.session() as s:
            a = Access.of(s, who)
            try:
                bucket, name = a.target(given, "endpoint")
            except ModelsError as err:
                raise ServingError(str(err), err.status) from None
            if not NAME.fullmatch(name):
                raise ServingError(
                    f"{name!r} is not an endpoint name: 1-63 lowercase letters, digits and "
                    "dashes, starting and ending with a letter or digit (it is part of URLs)"
                )
            taken = s.scalar(
                select(Endpoint).where(Endpoint.bucket == bucket, Endpoint.name == name)
            )
            if taken is not None:
                raise ServingError(f"an endpoint named {given!r} exists already", 409)
            now = now_ms()
            row = Endpoint(
                bucket=bucket,
                name=name,
                creator=who.name,
                model_id=dep.model_id,
                ref=dep.ref,
                version=None,
                replicas=replicas,
                size=size,
                environment=environment,
                follow=follow,
                batching=batching,
                status="deploying",
                message="",
                created_ms=now,
                updated_ms=now,
            )
            s.add(row)
        return row, dep

    def _deployable(self, who: Reader, model: str) -> Deployable:
        try:
            return self.registry.deployable(who, model)
        except ModelsError as err:
            raise ServingError(str(err), err.status) from None

    def _size(self, who: Reader, size: str | None) -> str:
        choices = self.policies.choices(who.name, who.admin)
        name = size or choices.default_size
        if name not in {z.name for z in choices.sizes}:
            allowed = ", ".join(z.name for z in choices.sizes) or "none"
            raise ServingError(f"size {name!r} is not one you may use (yours: {allowed})", 403)
        return str(name)

    async def update(self, who: Reader, name: str, changes: dict[str, Any]) -> EndpointView:
        """``changes``: model, replicas, size, follow, batching, canary ({model, share} or
        None), canary_share; each given one applied, then what it needs rolled out."""
        row, plans = await _run(self._update_row, who, name, changes)
        route = self.by_id.get(row.id)
        if route is not None:
            if "canary_share" in changes or changes.get("canary"):
                route.pool.share = row.canary_share if row.canary_version is not None else 0
            if "canary" in changes and changes["canary"] is None:
                route.pool.share = 0
                old = [b for b in route.pool.backends if b.role == "canary"]
                self._later(self._retire(route, old))
        for role, version, reason in plans:
            self._spawn(row.id, role, version, reason, who.name)
        return await _run(self.view, who, self._shown(who, row))

    def _update_row(
        self, who: Reader, given: str, changes: dict[str, Any]
    ) -> tuple[Endpoint, list[tuple[str, int, str]]]:
        plans: list[tuple[str, int, str]] = []
        with self.db.session() as s:
            row = self._row(s, who, given, write=True)
            restart = False
            if "model" in changes:
                dep = self._deployable(who, changes["model"])
                row.model_id, row.ref = dep.model_id, dep.ref
                plans.append(("main", dep.version, "new version"))
            if "replicas" in changes:
                _check_replicas(changes["replicas"])
                restart |= changes["replicas"] != row.replicas
                row.replicas = changes["replicas"]
            if "size" in changes:
                size = self._size(who, changes["size"])
                restart |= size != row.size
                row.size = size
            if "batching" in changes:
                restart |= bool(changes["batching"]) != row.batching
                row.batching = bool(changes["batching"])
            if "follow" in changes:
                row.follow = bool(changes["follow"])
            if "canary" in changes:
                canary = changes["canary"]
                if canary is None:
                    row.canary_ref, row.canary_version, row.canary_share = "", None, 0
                else:
                    dep = self._deployable(who, canary["model"])
                    if dep.model_id != row.model_id:
                        raise ServingError("a canary serves another version of the same model")
                    row.canary_ref = dep.ref
                    row.canary_share = _share(canary.get("share", 10))
                    plans.append(("canary", dep.version, "canary"))
            if "canary_share" in changes:
                if not row.canary_ref:
                    raise ServingError("this endpoint has no canary")
                row.canary_share = _share(changes["canary_share"])
            if restart and not any(p[0] == "main" for p in plans) and row.version is not None:
                plans.append(("main", row.version, "new settings"))
            row.updated_ms = now_ms()
        return row, plans

    async def delete(self, who: Reader, name: str) -> None:
        row = await _run(self._delete_row, who, name)
        route = self.by_id.pop(row.id, None)
        self.routes.pop((owner_of(row.bucket), row.name), None)
        self.tokens = {d: e for d, e in self.tokens.items() if e != row.id}
        if route is not None:
            async with route.lock:
                await self._retire(route, list(route.pool.backends))

    def _delete_row(self, who: Reader, given: str) -> Endpoint:
        with self.db.session() as s:
            row = self._row(s, who, given, write=True)
            s.delete(row)
            return row

    # tokens -----------------------------------------------------------------------------------
    def new_token(self, who: Reader, given: str, label: str) -> tuple[TokenView, str]:
        label = label.strip()
        if not label or len(label) > 64:
            raise ServingError("a token needs a name of 1-64 characters (what uses it)")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.session() as s:
            row = self._row(s, who, given, write=True)
            t = EndpointToken(
                endpoint_id=row.id,
                name=label,
                digest=digest(token),
                hint=token[: len(TOKEN_PREFIX) + 4],
                creator=who.name,
                created_ms=now_ms(),
            )
            s.add(t)
            s.flush()
            view = _token_view(t)
        self.tokens[digest(token)] = row.id
        return view, token

    def revoke_token(self, who: Reader, given: str, token_id: int) -> None:
        with self.db.session() as s:
            row = self._row(s, who, given, write=True)
            t = s.get(EndpointToken, token_id)
            if t is None or t.endpoint_id != row.id:
                raise ServingError(f"endpoint {given!r} has no token {token_id}", 404)
            t.revoked_ms = t.revoked_ms or now_ms()
            self.tokens.pop(t.digest, None)

    # views ------------------------------------------------------------------------------------
    def _row(self, s: Any, who: Reader, given: str, write: bool = False) -> Endpoint:
        a = Access.of(s, who)
        buckets, bare = a.candidates(given)
        rows = s.scalars(
            select(Endpoint).where(Endpoint.bucket.in_(buckets), Endpoint.name == bare)
        ).all()
        mine = [r for r in rows if r.bucket == buckets[0]] or list(rows)
        if not mine:
            raise ServingError(f"endpoint {given!r} does not exist", 404)
        if len(mine) > 1:
            raise ServingError(f"several endpoints are called {given!r}: say owner{SEP}name")
        if write and not a.can_write(mine[0].bucket):
            raise ServingError(f"you may call endpoint {given!r} but not change it", 403)
        return mine[0]  # type: ignore[no-any-return]

    def _shown(self, who: Reader, row: Endpoint) -> str:
        owner = owner_of(row.bucket)
        return row.name if owner == who.name else f"{owner}{SEP}{row.name}"

    def visible(self, who: Reader) -> list[EndpointView]:
        with self.db.session() as s:
            a = Access.of(s, who)
            readable = a.readable()
            q = select(Endpoint).order_by(Endpoint.bucket, Endpoint.name)
            if readable is not None:
                q = q.where(Endpoint.bucket.in_(readable))
            return [self._view(s, a, r) for r in s.scalars(q)]

    def view(self, who: Reader, given: str) -> EndpointView:
        with self.db.session() as s:
            return self._view(s, Access.of(s, who), self._row(s, who, given))

    def detail(self, who: Reader, given: str) -> EndpointDetail:
        with self.db.session() as s:
            a = Access.of(s, who)
            row = self._row(s, who, given)
            base = self._view(s, a, row)
            rollouts = s.scalars(
                select(Rollout)
                .where(Rollout.endpoint_id == row.id)
                .order_by(Rollout.id.desc())
                .limit(50)
            ).all()
            tokens: list[EndpointToken] = []
            if a.can_write(row.bucket):
                tokens = list(
                    s.scalars(
                        select(EndpointToken)
                        .where(EndpointToken.endpoint_id == row.id)
                        .order_by(EndpointToken.id)
                    )
                )
            return EndpointDetail(
                **base.model_dump(),
                rollouts=[_rollout_view(r) for r in rollouts],
                tokens=[_token_view(t) for t in tokens],
            )

    def _view(self, s: Any, a: Access, row: Endpoint) -> EndpointView:
        model = s.get(RegisteredModel, row.model_id)
        route = self.by_id.get(row.id)
        ready = route.pool.ready() if route else []
        owner = owner_of(row.bucket)
        return EndpointView(
            name=a.shown(row.bucket, row.name),
            owner=owner,
            path=f"serving/{owner}/{row.name}",
            access="write" if a.can_write(row.bucket) else "read",
            model=a.shown(model.bucket, model.name) if model else "",
            ref=row.ref,
            version=row.version,
            replicas=row.replicas,
            ready_replicas=len([b for b in ready if b.role == "main"]),
            size=row.size,
            environment=row.environment,
            follow=row.follow,
            batching=row.batching,
            canary_ref=row.canary_ref or None,
            canary_version=row.canary_version,
            canary_share=row.canary_share,
            status=row.status,
            message=row.message,
            creator=row.creator,
            created_at=_at(row.created_ms),
            updated_at=_at(row.updated_ms),
        )

    # rollouts ---------------------------------------------------------------------------------
    def _spawn(self, endpoint_id: int, role: str, version: int, reason: str, actor: str) -> None:
        self._later(self._rollout(endpoint_id, role, version, reason, actor))

    def _later(self, coro: Any) -> None:
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
                plan = await _run(self._plan, endpoint_id, role, version, reason, actor)
                if plan is None:
                    return
                await _run(self._fetch, plan)
                for spec in plan.specs:
                    replica = await _run(self.runner.start, spec)
                    started.append(Backend(replica, role, version))
                await asyncio.gather(*(self._until_ready(b) for b in started))
                await self._warm(started, plan.specs[0].name)
            except Exception as err:  # noqa: BLE001 (recorded on the endpoint, never raised)
                for b in started:
                    b.close_idle()
                    await _run(self.runner.stop, b.replica, 1.0)
                if plan is not None:
                    await _run(self._finish, plan, f"{err}")
                    log.warning("rollout of endpoint %s failed: %s", endpoint_id, err)
                return
            if self.by_id.get(endpoint_id) is not route:
                await self._retire(route, started)
                return
            old = [b for b in route.pool.backends if b.role == role]
            for b in started:
                b.ready = True
            route.pool.backends += started
            await _run(self._finish, plan, "")
            if role == "canary":
                route.pool.share = plan.share
            await self._retire(route, old)

    async def _retire(self, route: Route, backends: list[Backend]) -> None:
        await route.pool.drain(backends, DRAIN_GRACE)
        for b in backends:
            await _run(self.runner.stop, b.replica)

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
                why = await _run(self.runner.why, b.replica)
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
                    self._spawn(route.id, role, dead[0].version, "replica exited", "lakehub")
        for endpoint_id, role, version in await _run(self._moved):
            moved = self.by_id.get(endpoint_id)
            if moved is not None and not moved.lock.locked():
                self._spawn(endpoint_id, role, version, "alias moved", "lakehub")

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


def _check_replicas(n: Any) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_REPLICAS:
        raise ServingError(f"replicas must be a whole number from 1 to {MAX_REPLICAS}")


def _share(n: Any) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 100:
        raise ServingError("a canary's share is a whole percent, 0 to 100")
    return n


def _at(ms: int | None) -> Any:
    from datetime import UTC, datetime

    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _rollout_view(r: Rollout) -> RolloutView:
    return RolloutView(
        role=r.role,
        version=r.version,
        replicas=r.replicas,
        reason=r.reason,
        actor=r.actor,
        state=r.state,
        message=r.message,
        started_at=_at(r.started_ms),
        ended_at=_at(r.ended_ms),
    )


def _token_view(t: EndpointToken) -> TokenView:
    return TokenView(
        id=t.id,
        name=t.name,
        hint=t.hint + "...",
        creator=t.creator,
        created_at=_at(t.created_ms),
        revoked_at=_at(t.revoked_ms),
    )


async def _run(fn: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(lambda: fn(*args))
