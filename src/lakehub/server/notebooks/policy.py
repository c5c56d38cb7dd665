"""Who may start what: sizes, per-group choices and quotas, and the plan for one spawn.

Rules (each documented in docs/howto/notebook-environments.md):
- Allowed environments (and sizes): a user policy's list if set; else the union of the lists
  of the user's groups that set one; else all. Administrators may use all.
- Defaults: the user policy's, else the first group's (by name) that sets one, else
  ``datascience`` / ``small`` (or the first allowed).
- Quotas: a *user* policy (or ``notebook_max_servers``) bounds that user's running servers and
  their total memory; a *group* policy bounds the total over all the group's members. Pending
  spawns count.
- Idle timeout: the user policy's, else the most generous of the user's groups' (0 = never),
  else the hub's ``cull_idle_timeout``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from lakehub.server.db import Group, GroupMember, NotebookPolicy, User, utcnow
from lakehub.server.db import Size as SizeRow
from lakehub.server.identity.users import Directory, UserError, valid_name
from lakehub.server.notebooks.registry import Environments
from lakehub.server.notebooks.specs import Size, SpecError
from lakehub.sizes import human

OPTIONS = ("environment", "size")  # what a spawn may choose; nothing else
POLICY_FIELDS = (
    "environments",
    "sizes",
    "default_environment",
    "default_size",
    "max_servers",
    "max_memory",
    "cull_timeout",
)
Active = dict[str, dict[str, dict[str, Any]]]  # user -> server name -> its user_options


class PolicyView(BaseModel):
    """A group's or a user's policy: null where it sets nothing."""

    model_config = ConfigDict(frozen=True)

    kind: str
    name: str
    environments: list[str] | None
    sizes: list[str] | None
    default_environment: str | None
    default_size: str | None
    max_servers: int | None
    max_memory: int | None
    cull_timeout: int | None


@dataclass
class Choices:
    """What one user may pick, and their limits."""

    environments: list[str]
    sizes: list[Size]
    default_environment: str | None
    default_size: str | None
    max_servers: int
    max_memory: int | None
    cull_timeout: int
    groups: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    environment: str
    path: Path
    size: Size
    cull_timeout: int


class Policies:
    def __init__(
        self, directory: Directory, environments: Environments, cull_timeout: int, max_servers: int
    ) -> None:
        self.db = directory.db
        self.directory = directory
        self.environments = environments
        self.cull_timeout = cull_timeout
        self.max_servers = max_servers

    # sizes ---------------------------------------------------------------------------------
    def sizes(self) -> list[Size]:
        with self.db.session() as s:
            rows = s.scalars(select(SizeRow).order_by(SizeRow.memory, SizeRow.name))
            return [Size(r.name, r.cpus, r.memory, r.description) for r in rows]

    def put_size(self, name: str, cpus: float, memory: int, description: str) -> Size:
        try:
            size = Size(name, float(cpus), int(memory), description)
        except (SpecError, ValueError, TypeError) as err:
            raise UserError(str(err)) from None
        with self.db.session() as s:
            row = s.scalar(select(SizeRow).where(SizeRow.name == name))
            if row is None:
                s.add(
                    SizeRow(name=name, cpus=size.cpus, memory=size.memory, description=description)
                )
            else:
                row.cpus, row.memory, row.description = size.cpus, size.memory, description
        return size

    def delete_size(self, name: str) -> None:
        with self.db.session() as s:
            row = s.scalar(select(SizeRow).where(SizeRow.name == name))
            if row is None:
                raise UserError(f"no size named {name!r}", 404)
            s.delete(row)

    # policies ------------------------------------------------------------------------------
    def all(self) -> list[PolicyView]:
        with self.db.session() as s:
            rows = s.scalars(
                select(NotebookPolicy).order_by(NotebookPolicy.kind, NotebookPolicy.name)
            )
            return [_view(r) for r in rows]

    def put(self, kind: str, name: str, fields: dict[str, Any], actor: str) -> PolicyView:
        """Set the given fields of a policy (None clears one); others stay as they were."""
        if kind not in ("user", "group"):
            raise UserError("a policy is for a 'user' or a 'group'")
        valid_name(name, kind)
        unknown = set(fields) - set(POLICY_FIELDS)
        if unknown:
            raise UserError(f"unknown policy field(s): {', '.join(sorted(unknown))}")
        envs = {e.name for e in self.environments.all()}
        sizes = {z.name for z in self.sizes()}
        for key, known, what in (("environments", envs, "environment"), ("sizes", sizes, "size")):
            for item in fields.get(key) or []:
                if item not in known:
                    raise UserError(f"no {what} named {item!r}")
        for key, known, what in (
            ("default_environment", envs, "environment"),
            ("default_size", sizes, "size"),
        ):
            if fields.get(key) is not None and fields[key] not in known:
                raise UserError(f"no {what} named {fields[key]!r}")
        for key in ("max_servers", "max_memory", "cull_timeout"):
            value = fields.get(key)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise UserError(f"{key} must be a whole number, 0 or more")
        with self.db.session() as s:
            if kind == "group" and not s.scalar(select(Group).where(Group.name == name)):
                raise UserError(f"no group named {name!r}", 404)
            if kind == "user":
                self.directory.get(s, name)
            row = s.scalar(
                select(NotebookPolicy).where(
                    NotebookPolicy.kind == kind, NotebookPolicy.name == name
                )
            )
            if row is None:
                row = NotebookPolicy(kind=kind, name=name, updated_by=actor)
                s.add(row)
            for key, value in fields.items():
                if key in ("environments", "sizes"):
                    value = None if value is None else json.dumps(sorted(set(value)))
                setattr(row, key, value)
            row.updated_by, row.updated_at = actor, utcnow()
            self.directory.record_event(
                s, actor, "policy.set", f"{kind}:{name}", ",".join(sorted(fields))
            )
            return _view(row)

    def delete(self, kind: str, name: str, actor: str) -> None:
        with self.db.session() as s:
            row = s.scalar(
                select(NotebookPolicy).where(
                    NotebookPolicy.kind == kind, NotebookPolicy.name == name
                )
            )
            if row is None:
                raise UserError(f"no policy for {kind} {name!r}", 404)
            s.delete(row)
            self.directory.record_event(s, actor, "policy.remove", f"{kind}:{name}")

    # one user's view -----------------------------------------------------------------------
    def _policies_of(self, user: str) -> tuple[PolicyView | None, list[PolicyView]]:
        with self.db.session() as s:
            groups = list(
                s.scalars(
                    select(Group.name)
                    .join(GroupMember, GroupMember.group_id == Group.id)
                    .join(User, User.id == GroupMember.user_id)
                    .where(User.name == user)
                )
            )
            rows = s.scalars(
                select(NotebookPolicy).where(
                    ((NotebookPolicy.kind == "user") & (NotebookPolicy.name == user))
                    | ((NotebookPolicy.kind == "group") & NotebookPolicy.name.in_(groups))
                )
            )
            views = [_view(r) for r in rows]
        own = next((v for v in views if v.kind == "user"), None)
        return own, sorted((v for v in views if v.kind == "group"), key=lambda v: v.name)

    def group_policies(self, user: str) -> list[PolicyView]:
        return self._policies_of(user)[1]

    def choices(self, user: str, admin: bool) -> Choices:
        own, groups = self._policies_of(user)
        all_envs = [e.name for e in self.environments.all()]
        all_sizes = self.sizes()

        def allowed(key: str, every: list[str]) -> list[str]:
            if admin:
                return every
            if own is not None and getattr(own, key) is not None:
                chosen = set(getattr(own, key))
            else:
                lists = [set(getattr(g, key)) for g in groups if getattr(g, key) is not None]
                chosen = set().union(*lists) if lists else set(every)
            return [x for x in every if x in chosen]

        envs = allowed("environments", all_envs)
        size_names = allowed("sizes", [z.name for z in all_sizes])

        def default(key: str, fallback: str, options: list[str]) -> str | None:
            for p in [own, *groups]:
                value = getattr(p, key) if p is not None else None
                if value in options:
                    return str(value)
            return fallback if fallback in options else (options[0] if options else None)

        timeouts = [g.cull_timeout for g in groups if g.cull_timeout is not None]
        if own is not None and own.cull_timeout is not None:
            cull = own.cull_timeout
        elif timeouts:
            cull = 0 if 0 in timeouts else max(timeouts)
        else:
            cull = self.cull_timeout
        return Choices(
            environments=envs,
            sizes=[z for z in all_sizes if z.name in size_names],
            default_environment=default("default_environment", "datascience", envs),
            default_size=default("default_size", "small", size_names),
            max_servers=self.max_servers
            if own is None or own.max_servers is None
            else own.max_servers,
            max_memory=own.max_memory if own else None,
            cull_timeout=cull if self.cull_timeout else 0,  # no culler runs when it is off
            groups=[g.name for g in groups],
        )

    def plan(
        self, user: str, admin: bool, server: str, options: dict[str, Any], active: Active
    ) -> Plan:
        """Check one spawn against the user's choices and every quota that applies; returns what
        to run, or raises a :class:`UserError` that says why not."""
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise UserError(
                f"unknown server option(s) {', '.join(sorted(unknown))}: a server "
                "takes 'environment' and 'size'; set variables with 'lakehub env "
                "set' or the form"
            )
        c = self.choices(user, admin)
        env = options.get("environment") or c.default_environment
        size_name = options.get("size") or c.default_size
        if not isinstance(env, str) or env not in c.environments:
            raise UserError(
                f"environment {env!r} is not one you may use; yours: "
                f"{', '.join(c.environments) or 'none'}",
                403,
            )
        size = next((z for z in c.sizes if z.name == size_name), None)
        if size is None:
            raise UserError(
                f"size {size_name!r} is not one you may use; yours: "
                f"{', '.join(z.name for z in c.sizes) or 'none'}",
                403,
            )
        path = self.environments.path(env)
        if path is None:
            view = self.environments.get(env)
            why = (
                f"its build failed: {view.error[-300:]}"
                if view.status == "failed"
                else f"it is being built ({view.progress or view.status}); try again in a moment"
            )
            raise UserError(f"environment {env!r} cannot start servers yet: {why}", 409)
        memory = {z.name: z.memory for z in self.sizes()}

        def others(users: list[str]) -> list[tuple[str, str, int]]:
            return [
                (u, name, memory.get(str((opts or {}).get("size")), 0))
                for u in users
                for name, opts in active.get(u, {}).items()
                if not (u == user and name == server)
            ]

        mine = others([user])
        if len(mine) + 1 > c.max_servers:
            names = ", ".join(n or "default" for _, n, _ in mine)
            raise UserError(
                f"you may run at most {c.max_servers} server(s) at once (running: "
                f"{names}); stop one first",
                403,
            )
        if c.max_memory is not None and sum(m for *_, m in mine) + size.memory > c.max_memory:
            raise UserError(
                f"a {size.name} server ({human(size.memory)}) would take your "
                f"servers past your memory quota of {human(c.max_memory)} (in use: "
                f"{human(sum(m for *_, m in mine))})",
                403,
            )
        members = self.directory.groups()
        _, groups = self._policies_of(user)
        for g in groups:
            theirs = others(members.get(g.name, []))
            if g.max_servers is not None and len(theirs) + 1 > g.max_servers:
                raise UserError(
                    f"group {g.name!r} may run at most {g.max_servers} server(s) at "
                    f"once and runs {len(theirs)}",
                    403,
                )
            used = sum(m for *_, m in theirs)
            if g.max_memory is not None and used + size.memory > g.max_memory:
                raise UserError(
                    f"a {size.name} server ({human(size.memory)}) would take group "
                    f"{g.name!r} past its memory quota of {human(g.max_memory)} "
                    f"(in use: {human(used)})",
                    403,
                )
        return Plan(environment=env, path=path, size=size, cull_timeout=c.cull_timeout)

    def cull_timeouts(self, users: list[str]) -> dict[str, int]:
        """Each user's idle timeout, for the culler."""
        return {u: self.choices(u, admin=False).cull_timeout for u in users}


def _view(r: NotebookPolicy) -> PolicyView:
    return PolicyView(
        kind=r.kind,
        name=r.name,
        environments=None if r.environments is None else json.loads(r.environments),
        sizes=None if r.sizes is None else json.loads(r.sizes),
        default_environment=r.default_environment,
        default_size=r.default_size,
        max_servers=r.max_servers,
        max_memory=r.max_memory,
        cull_timeout=r.cull_timeout,
    )
