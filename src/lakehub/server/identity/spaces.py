"""Shared spaces: buckets ``space-<name>`` that their owner (or an admin) opens to users and groups.

Grants are enforced by the lake itself, through each grantee's own identity: the space's actions
join it when granted and leave it when revoked, effective when the call returns. Every change
is recorded in the audit trail.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from lakehub.server.db import Grant, Group, Space, User
from lakehub.server.identity.users import (
    Directory,
    UserError,
    shared_access,
    space_bucket,
    valid_name,
)
from lakehub.server.lake.base import ACCESS_LEVELS
from lakehub.server.schema import Instant


class SpaceGrant(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["user", "group"]
    name: str
    access: str


class SpaceView(BaseModel):
    """A space as the caller sees it."""

    model_config = ConfigDict(frozen=True)

    name: str
    bucket: str
    owner: str
    created_at: Instant
    access: str = Field(description="Yours: owner, write, read, or admin")
    grants: tuple[SpaceGrant, ...]


class Spaces:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.db = directory.db

    def create(self, name: str, owner: str, actor: str) -> SpaceView:
        valid_name(name, "space")
        with self.db.session() as s:
            if s.scalar(select(Space).where(Space.name == name)):
                raise UserError(f"space {name!r} already exists", 409)
            user = self.directory.get(s, owner)
            if user.status != "active":
                raise UserError(f"user {owner!r} is not active", 409)
            s.add(Space(name=name, owner_id=user.id))
            self.directory.record_event(s, actor, "space.create", name, f"owner {owner}")
        self.directory.lake.ensure_bucket(space_bucket(name))
        self.directory.sync_lake()
        return self.get(name, owner, admin=False)

    def grant(
        self,
        space: str,
        access: str,
        actor: str,
        admin: bool,
        *,
        user: str | None = None,
        group: str | None = None,
    ) -> None:
        if access not in ACCESS_LEVELS:
            raise UserError(f"access must be one of {', '.join(ACCESS_LEVELS)}, not {access!r}")
        if (user is None) == (group is None):
            raise UserError("grant to exactly one user or one group")
        with self.db.session() as s:
            sp = self._manageable(s, space, actor, admin)
            user_id, group_id = self._grantee(s, user, group)
            row = s.scalar(
                select(Grant).where(
                    Grant.space_id == sp.id,
                    Grant.user_id.is_(None) if user_id is None else Grant.user_id == user_id,
                    Grant.group_id.is_(None) if group_id is None else Grant.group_id == group_id,
                )
            )
            if row is None:
                s.add(
                    Grant(
                        space_id=sp.id,
                        user_id=user_id,
                        group_id=group_id,
                        access=access,
                        granted_by=actor,
                    )
                )
            else:
                row.access, row.granted_by = access, actor
            who = f"user {user}" if user else f"group {group}"
            self.directory.record_event(s, actor, "space.grant", space, f"{access} to {who}")
        self.directory.sync_lake()

    def revoke(
        self,
        space: str,
        actor: str,
        admin: bool,
        *,
        user: str | None = None,
        group: str | None = None,
    ) -> None:
        if (user is None) == (group is None):
            raise UserError("revoke from exactly one user or one group")
        with self.db.session() as s:
            sp = self._manageable(s, space, actor, admin)
            user_id, group_id = self._grantee(s, user, group)
            rows = s.scalars(
                select(Grant).where(
                    Grant.space_id == sp.id,
                    Grant.user_id == user_id if user_id else Grant.group_id == group_id,
                )
            ).all()
            if not rows:
                raise UserError(f"no grant on {space} for {user or group}", 404)
            for row in rows:
                s.delete(row)
            who = f"user {user}" if user else f"group {group}"
            self.directory.record_event(s, actor, "space.revoke", space, f"from {who}")
        self.directory.sync_lake()

    def delete(self, space: str, actor: str, admin: bool) -> None:
        """Forget the space and every grant on it; its bucket and data stay for the admin."""
        with self.db.session() as s:
            s.delete(self._manageable(s, space, actor, admin))
            self.directory.record_event(s, actor, "space.delete", space)
        self.directory.sync_lake()

    def get(self, space: str, viewer: str, admin: bool) -> SpaceView:
        views = {v.name: v for v in self.visible(viewer, admin)}
        if space not in views:
            raise UserError(f"no space named {space!r}", 404)
        return views[space]

    def visible(self, viewer: str, admin: bool) -> list[SpaceView]:
        """The spaces ``viewer`` owns or was granted (all of them for an admin)."""
        with self.db.session() as s:
            mine = shared_access(s).get(viewer, {})
            out = []
            owners = select(Space, User.name).join(User, User.id == Space.owner_id)
            for sp, owner in s.execute(owners.order_by(Space.name)):
                access = "owner" if owner == viewer else mine.get(space_bucket(sp.name), "")
                if not access and not admin:
                    continue
                out.append(
                    SpaceView(
                        name=sp.name,
                        bucket=space_bucket(sp.name),
                        owner=owner,
                        created_at=sp.created_at,
                        access=access or "admin",
                        grants=self._grants(s, sp.id),
                    )
                )
            return out

    # helpers -------------------------------------------------------------------------------
    def _manageable(self, s: Session, space: str, actor: str, admin: bool) -> Space:
        sp = s.scalar(select(Space).where(Space.name == space))
        if sp is None:
            raise UserError(f"no space named {space!r}", 404)
        owner = s.scalar(select(User.name).where(User.id == sp.owner_id))
        if not admin and owner != actor:
            if space_bucket(space) not in shared_access(s).get(actor, {}):
                raise UserError(f"no space named {space!r}", 404)  # others do not learn it exists
            raise UserError(f"only {space}'s owner or an administrator may change it", 403)
        return sp

    def _grantee(
        self, s: Session, user: str | None, group: str | None
    ) -> tuple[int | None, int | None]:
        if user is not None:
            return self.directory.get(s, user).id, None
        g = s.scalar(select(Group).where(Group.name == group))
        if g is None:
            raise UserError(f"no group named {group!r}", 404)
        return None, g.id

    @staticmethod
    def _grants(s: Session, space_id: int) -> tuple[SpaceGrant, ...]:
        users = s.execute(
            select(User.name, Grant.access)
            .join(Grant, Grant.user_id == User.id)
            .where(Grant.space_id == space_id)
        ).all()
        groups = s.execute(
            select(Group.name, Grant.access)
            .join(Grant, Grant.group_id == Group.id)
            .where(Grant.space_id == space_id)
        ).all()
        found = [SpaceGrant(kind="user", name=n, access=a) for n, a in users] + [
            SpaceGrant(kind="group", name=n, access=a) for n, a in groups
        ]
        return tuple(sorted(found, key=lambda g: (g.kind, g.name, g.access)))
