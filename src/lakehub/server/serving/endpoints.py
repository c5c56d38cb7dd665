"""Endpoints: a registered model version served by replicas, changed without a failed request.

Rules:

- An endpoint belongs to a bucket (its creator's home or a space's), as a model does: whoever
  reads the bucket may call it and see it, whoever writes it may change it. Its name is
  ``name`` or ``owner.name``; its address is ``serving/<owner>/<name>/``.
- Every change of what serves (deploy, a new version or alias, a new number of replicas, a
  restart) is a *rollout* (``rollouts``): new replicas start beside the old and get traffic
  only once warmed up; the old drain, then stop. A rollout that fails leaves the old replicas
  serving and says why on the endpoint.
- A canary is a second set of replicas (``role`` canary) getting ``share`` percent of
  requests. Promoting it is moving the alias the endpoint follows: with ``follow`` on, a move of
  either alias rolls the matching set out to the alias's new version (checked every second).
- A replica that dies is replaced by a rollout of its set (reason ``replica exited``).
- Application tokens (``lhe_...``) open one endpoint; only their SHA-256 is kept.

Blocking work (the database, the lake, processes) runs in worker threads; routes, pools and
rollouts live on the control plane's event loop.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from sqlalchemy import select

from lakehub.server.identity.users import home_bucket
from lakehub.server.models.base import ModelsError, Reader
from lakehub.server.models.owners import SEP, Access, owner_of
from lakehub.server.models.registry import Deployable, Registry
from lakehub.server.models.tables import RegisteredModel
from lakehub.server.schema import now_ms
from lakehub.server.serving.base import ServingError
from lakehub.server.serving.rollouts import Rollouts, Route, log, run
from lakehub.server.serving.samples import Samples
from lakehub.server.serving.tables import Endpoint, EndpointToken, Rollout
from lakehub.server.serving.views import (
    EndpointDetail,
    EndpointView,
    TokenView,
    endpoint_view,
    rollout_view,
    token_view,
)

NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_REPLICAS = 16
TOKEN_PREFIX = "lhe_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Endpoints:
    def __init__(self, rollouts: Rollouts, samples: Samples) -> None:
        self.rollouts = rollouts
        self.db, self.registry = rollouts.db, rollouts.registry
        self.runner, self.policies = rollouts.runner, rollouts.policies
        self.samples = samples
        self.by_id = rollouts.by_id  # the routes by id, which the rollouts keep up
        self.routes: dict[tuple[str, str], Route] = {}  # (owner, name) -> route
        self.tokens: dict[str, int] = {}  # digest -> endpoint id
        self._grants: dict[tuple[str, str], bool] = {}  # (caller, bucket) -> may call
        # token digest -> (who, until): the door asks JupyterHub and the database once a while
        self.callers: dict[str, tuple[Reader, float]] = {}
        self.db.on_change.append(self.forget)  # a grant or a user changed: ask again

    def forget(self) -> None:
        """Drop what was learnt of callers (a token revoked, a grant or a user changed)."""
        self._grants.clear()
        self.callers.clear()

    # life -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Stop what a previous run left, then roll every endpoint out again; watch."""
        self.rollouts.watch()
        stopped = await run(self.runner.stop_leftovers)
        if stopped:
            log.info("stopped %d replicas a previous run left", stopped)
        for row in await run(self._all_rows):
            self._add_route(row)
            if row.version is not None:
                self.rollouts.spawn(row.id, "main", row.version, "hub started", "lakehub")
            if row.canary_version is not None:
                self.rollouts.spawn(row.id, "canary", row.canary_version, "hub started", "lakehub")
        self.tokens = await run(self._live_tokens)

    async def close(self) -> None:
        await self.rollouts.close()
        await self.samples.flush()
        for route in list(self.by_id.values()):
            for b in route.pool.backends:
                b.close_idle()
                await run(self.runner.stop, b.replica, 2.0)
        await run(self.runner.close)

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
        route = Route(row.id, row.bucket, row.name, owner_of(row.bucket), row.creator)
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
        row, dep = await run(
            self._create_row, who, name, model, replicas, size, environment, follow, batching
        )
        self._add_route(row)
        self.rollouts.watch()
        self.rollouts.spawn(row.id, "main", dep.version, "deploy", who.name)
        return await run(self.view, who, self._shown(who, row))

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
        row, plans = await run(self._update_row, who, name, changes)
        route = self.by_id.get(row.id)
        if route is not None:
            if "canary_share" in changes or changes.get("canary"):
                route.pool.share = row.canary_share if row.canary_version is not None else 0
            if "canary" in changes and changes["canary"] is None:
                route.pool.share = 0
                old = [b for b in route.pool.backends if b.role == "canary"]
                self.rollouts.later(self.rollouts.retire(route, old))
        for role, version, reason in plans:
            self.rollouts.spawn(row.id, role, version, reason, who.name)
        return await run(self.view, who, self._shown(who, row))

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
        row = await run(self._delete_row, who, name)
        route = self.by_id.pop(row.id, None)
        self.routes.pop((owner_of(row.bucket), row.name), None)
        self.tokens = {d: e for d, e in self.tokens.items() if e != row.id}
        if route is not None:
            async with route.lock:
                await self.rollouts.retire(route, list(route.pool.backends))

    async def remove_creator(self, user: str) -> int:
        """Stop and forget every endpoint ``user`` made (their replicas run as ``user``'s
        account, which is going); how many."""
        rows = await run(self._rows_of, user)
        for row in rows:
            route = self.by_id.pop(row.id, None)
            self.routes.pop((owner_of(row.bucket), row.name), None)
            self.tokens = {d: e for d, e in self.tokens.items() if e != row.id}
            if route is not None:
                async with route.lock:
                    await self.rollouts.retire(route, list(route.pool.backends))
        return len(rows)

    def _rows_of(self, user: str) -> list[Endpoint]:
        with self.db.session() as s:
            rows = list(s.scalars(select(Endpoint).where(Endpoint.creator == user)))
            for row in rows:
                s.delete(row)
            return rows

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
            view = token_view(t)
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
                rollouts=[rollout_view(r) for r in rollouts],
                tokens=[token_view(t) for t in tokens],
            )

    def figures(self, who: Reader, given: str) -> Route:
        """The endpoint's route (its pool's figures), for one who may read it."""
        with self.db.session() as s:
            row = self._row(s, who, given)
        route = self.by_id.get(row.id)
        if route is None:
            raise ServingError(f"endpoint {given!r} does not exist", 404)
        return route

    def kserve(self, who: Reader, given: str, namespace: str) -> dict[str, Any]:
        """The endpoint as a KServe ``InferenceService`` for ``namespace`` (see ``kserve``),
        reading the version from the lake with the service account ``lakehub-lake``'s keys."""
        from lakehub.server.serving.kserve import for_endpoint

        with self.db.session() as s:
            row = self._row(s, who, given)
            if row.version is None:
                raise ServingError(f"endpoint {given!r} serves no version yet", 409)
            model = s.get(RegisteredModel, row.model_id)
            assert model is not None
            size = next((z for z in self.policies.sizes() if z.name == row.size), None)
            try:
                return for_endpoint(
                    owner_of(row.bucket),
                    row.name,
                    Access.of(s, who).shown(model.bucket, model.name),
                    f"s3://{model.bucket}/{Registry.prefix(model.id, row.version)}",
                    row.version,
                    row.replicas,
                    (size.cpus, size.memory) if size else (1.0, 2**30),
                    namespace,
                )
            except ValueError as err:
                raise ServingError(str(err)) from None

    def _view(self, s: Any, a: Access, row: Endpoint) -> EndpointView:
        model = s.get(RegisteredModel, row.model_id)
        route = self.by_id.get(row.id)
        ready = len(route.pool.ready("main")) if route else 0
        model_name = a.shown(model.bucket, model.name) if model else ""
        shown, writable = a.shown(row.bucket, row.name), a.can_write(row.bucket)
        pending = self.rollouts.pending.get(row.id, 0)
        return endpoint_view(row, shown, writable, model_name, ready, pending)


def _check_replicas(n: Any) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_REPLICAS:
        raise ServingError(f"replicas must be a whole number from 1 to {MAX_REPLICAS}")


def _share(n: Any) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 100:
        raise ServingError("a canary's share is a whole percent, 0 to 100")
    return n
