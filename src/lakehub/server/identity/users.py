"""Users, groups, lake keys and the audit trail: the identity area.

Passwords are bcrypt hashes; lake secrets are encrypted with the hub's vault key. The lake's
identity set is always rebuilt from the database, so it can never drift from what admins see.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable

import bcrypt
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from lakehub.server.config import SettingsError, check_username
from lakehub.server.db import (
    Database,
    Event,
    Grant,
    Group,
    GroupMember,
    LakeKey,
    Space,
    User,
    utcnow,
)
from lakehub.server.lake.base import Identity, Lake, random_key
from lakehub.server.schema import Instant
from lakehub.server.vault import Vault

MIN_PASSWORD = 8


class UserError(ValueError):
    """A request about users that cannot be done; ``status`` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class LakeCredentials(BaseModel):
    """A user's lake key, for its owner only."""

    model_config = ConfigDict(frozen=True)

    endpoint_url: str
    access_key_id: str
    secret_access_key: str = Field(repr=False)
    bucket: str
    region: str = "us-east-1"
    created_at: Instant


def home_bucket(name: str) -> str:
    return f"{name}-home"


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password too short: use at least {MIN_PASSWORD} characters")
    if len(password.encode()) > 72:
        raise UserError("password too long: use at most 72 bytes")
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def new_password() -> str:
    return secrets.token_urlsafe(12)


def check_password(db: Database, name: str, password: str) -> User | str:
    """The user if ``password`` is right and the account active, else a reason for the person."""
    with db.session() as s:
        user = s.scalar(select(User).where(User.name == name))
        if user is None or not user.password_hash:
            bcrypt.checkpw(b"timing", bcrypt.hashpw(b"x", bcrypt.gensalt(4)))
            return "Invalid username or password."
        if not bcrypt.checkpw(password.encode()[:72], user.password_hash.encode()):
            return "Invalid username or password."
        if user.status == "pending":
            return "Your account is waiting for an administrator's approval."
        if user.status != "active":
            return "This account is disabled."
        return user


def valid_name(name: str, kind: str = "user") -> str:
    try:
        return check_username(name, kind)
    except SettingsError as err:
        raise UserError(str(err)) from None


def space_bucket(name: str) -> str:
    return f"space-{name}"


EVERYONE = "everyone"  # a group nobody joins: a grant to it is a grant to every active user


def shared_access(s: Session) -> dict[str, dict[str, str]]:
    """user -> {space bucket: "read" | "write"}: owners write, grants to users and to groups
    (to the group ``everyone``: every active user)."""
    out: dict[str, dict[str, str]] = {}

    def give(user: str, space: str, access: str) -> None:
        mine = out.setdefault(user, {})
        if mine.get(space_bucket(space)) != "write":
            mine[space_bucket(space)] = access

    for space, owner in s.execute(
        select(Space.name, User.name).join(User, User.id == Space.owner_id)
    ):
        give(owner, space, "write")
    direct = select(Space.name, User.name, Grant.access).join(Grant, Grant.space_id == Space.id)
    for space, user, access in s.execute(direct.join(User, User.id == Grant.user_id)):
        give(user, space, access)
    via_group = direct.join(GroupMember, GroupMember.group_id == Grant.group_id).join(
        User, User.id == GroupMember.user_id
    )
    for space, user, access in s.execute(via_group):
        give(user, space, access)
    grants = s.execute(
        select(Space.name, Grant.access)
        .join(Grant, Grant.space_id == Space.id)
        .join(Group, Group.id == Grant.group_id)
        .where(Group.name == EVERYONE)
    ).all()
    if grants:
        for user in s.scalars(select(User.name).where(User.status == "active")):
            for space, access in grants:
                give(user, space, access)
    return out


class Directory:
    def __init__(self, db: Database, vault: Vault, lake: Lake) -> None:
        self.db = db
        self.vault = vault
        self.lake = lake
        self._lake_lock = threading.Lock()

    # users ---------------------------------------------------------------------------------
    def get(self, s: Session, name: str) -> User:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise UserError(f"no user named {name!r}", 404)
        return user

    def exists(self, name: str) -> bool:
        with self.db.session() as s:
            return s.scalar(select(User.id).where(User.name == name)) is not None

    def list_users(self) -> list[User]:
        with self.db.session() as s:
            return list(s.scalars(select(User).order_by(User.name)))

    def create(
        self,
        name: str,
        *,
        actor: str,
        admin: bool = False,
        password: str | None = None,
        status: str = "active",
        provision: bool = True,
    ) -> tuple[User, str | None]:
        """Create a user; returns the generated password (shown once) if none was given.

        With ``provision=False`` the lake key is only recorded (the lake is not running yet).
        """
        valid_name(name)
        if self.exists(name):
            raise UserError(f"user {name!r} already exists", 409)
        generated = None
        if password is None and status == "active":
            password = generated = new_password()
        with self.db.session() as s:
            if s.scalar(select(User).where(User.name == name)) is not None:
                raise UserError(f"user {name!r} already exists", 409)
            user = User(
                name=name,
                admin=admin,
                status=status,
                password_hash=hash_password(password) if password else None,
                approved_by=actor if status == "active" else None,
            )
            s.add(user)
            self.record_event(
                s, actor, "user.create" if status == "active" else "user.signup", name
            )
        if status == "active":
            if provision:
                self.provision(name)
            else:
                self._issue_key(name)
        return user, generated

    def ensure_external(self, name: str, admin: bool | None = None) -> None:
        """Users from LDAP/OAuth exist here from their first login on."""
        with self.db.session() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                s.add(User(name=name, admin=bool(admin), status="active", approved_by="auth"))
                self.record_event(s, "auth", "user.create", name, "first login")
            elif admin is not None:
                user.admin = admin
        self.provision(name)

    def approve(self, name: str, actor: str) -> None:
        with self.db.session() as s:
            user = self.get(s, name)
            if user.status == "active":
                return
            user.status = "active"
            user.approved_by = actor
            self.record_event(s, actor, "user.approve", name)
        self.provision(name)

    def set_admin(self, name: str, admin: bool, actor: str) -> None:
        with self.db.session() as s:
            self.get(s, name).admin = admin
            self.record_event(s, actor, "user.admin" if admin else "user.unadmin", name)

    def set_password(self, name: str, password: str, actor: str) -> None:
        with self.db.session() as s:
            self.get(s, name).password_hash = hash_password(password)
            self.record_event(s, actor, "user.password", name)

    def change_password(self, name: str, current: str, new: str) -> None:
        """A person's own change: only with the password they have now."""
        if isinstance(check_password(self.db, name, current), str):
            raise UserError("the current password is not right", 400)
        if new == current:
            raise UserError("the new password is the current one: choose another")
        self.set_password(name, new, name)

    def check_removable(self, name: str) -> None:
        """Raise why ``name`` cannot be removed now (the spaces they own), if anything."""
        with self.db.session() as s:
            self._removable(s, self.get(s, name))

    def _removable(self, s: Session, user: User) -> None:
        owned = s.scalars(select(Space.name).where(Space.owner_id == user.id)).all()
        if owned:
            raise UserError(
                f"{user.name} owns the spaces {', '.join(owned)}: give them to someone else first",
                409,
            )

    def delete(self, name: str, actor: str) -> None:
        with self.db.session() as s:
            user = self.get(s, name)
            self._removable(s, user)
            s.delete(user)
            self.record_event(s, actor, "user.delete", name)
        self.sync_lake()

    # lake keys -----------------------------------------------------------------------------
    def provision(self, name: str) -> None:
        """Give an active user a lake key and a personal bucket (idempotent)."""
        if self._issue_key(name):
            self.sync_lake()
        self.lake.ensure_bucket(home_bucket(name))

    def _issue_key(self, name: str) -> bool:
        """Record a lake key for an active user who has none; True if one was made."""
        with self.db.session() as s:
            user = self.get(s, name)
            if user.status != "active":
                raise UserError(f"user {name!r} is not active", 409)
            if any(k.revoked_at is None for k in user.keys):
                return False
            # before the lake runs (the first admin, made by 'lakehub up'): a key of our making,
            # which a lake that issues its own keys replaces at its first sync
            key, secret = self.lake.issue_key(name) if self.lake else random_key()
            s.add(LakeKey(user=user, access_key=key, secret_enc=self.vault.encrypt(secret)))
            return True

    def credentials(self, name: str) -> LakeCredentials:
        with self.db.session() as s:
            user = self.get(s, name)
            key = next((k for k in user.keys if k.revoked_at is None), None)
            if key is None:
                raise UserError(f"user {name!r} has no lake key yet", 409)
            return LakeCredentials(
                endpoint_url=self.lake.endpoint_url,
                access_key_id=key.access_key,
                secret_access_key=self.vault.decrypt(key.secret_enc),
                bucket=home_bucket(name),
                created_at=key.created_at,
            )

    def rotate(self, name: str, actor: str) -> LakeCredentials:
        """Replace the user's key; the old one is refused by the lake when this returns."""
        self._replace_key(name, actor)
        self.sync_lake()
        return self.credentials(name)

    def _replace_key(self, name: str, actor: str) -> None:
        with self.db.session() as s:
            user = self.get(s, name)
            for k in user.keys:
                if k.revoked_at is None:
                    k.revoked_at = utcnow()
            key, secret = self.lake.issue_key(name)
            s.add(LakeKey(user=user, access_key=key, secret_enc=self.vault.encrypt(secret)))
            self.record_event(s, actor, "lake.rotate", name)

    def identities(self) -> list[Identity]:
        with self.db.session() as s:
            rows = s.execute(
                select(User.name, LakeKey.access_key, LakeKey.secret_enc)
                .join(LakeKey)
                .where(User.status == "active", LakeKey.revoked_at.is_(None))
            ).all()
            shared = shared_access(s)
        return [
            Identity(
                name,
                key,
                self.vault.decrypt(enc),
                (f"{name}-*",),
                tuple(sorted(shared.get(name, {}).items())),
            )
            for name, key, enc in rows
        ]

    def sync_lake(self) -> None:
        self._apply(self.lake.set_identities)

    def prepare_lake(self) -> None:
        """Before the lake's process starts ('lakehub up'): its identities, as :meth:`sync_lake`."""
        self._apply(self.lake.prepare)

    def _apply(self, apply: Callable[[list[Identity]], list[str]]) -> None:
        with self._lake_lock:
            stale = apply(self.identities())
            if stale:  # keys the lake did not issue (made before it ran, or for another lake)
                for name in stale:
                    self._replace_key(name, "lakehub")
                apply(self.identities())

    # groups --------------------------------------------------------------------------------
    def groups(self) -> dict[str, list[str]]:
        with self.db.session() as s:
            out: dict[str, list[str]] = {g.name: [] for g in s.scalars(select(Group))}
            rows = s.execute(
                select(Group.name, User.name)
                .join(GroupMember, GroupMember.group_id == Group.id)
                .join(User, User.id == GroupMember.user_id)
            ).all()
            for group, user in rows:
                out[group].append(user)
            return {g: sorted(m) for g, m in sorted(out.items())}

    def create_group(self, name: str, actor: str) -> None:
        valid_name(name, "group")
        with self.db.session() as s:
            if s.scalar(select(Group).where(Group.name == name)):
                raise UserError(f"group {name!r} already exists", 409)
            s.add(Group(name=name))
            self.record_event(s, actor, "group.create", name)

    def delete_group(self, name: str, actor: str) -> None:
        with self.db.session() as s:
            s.delete(self._group(s, name))
            self.record_event(s, actor, "group.delete", name)
        self.sync_lake()

    def add_member(self, group: str, name: str, actor: str) -> None:
        with self.db.session() as s:
            g, u = self._group(s, group), self.get(s, name)
            exists = s.scalar(
                select(GroupMember).where(GroupMember.group_id == g.id, GroupMember.user_id == u.id)
            )
            if not exists:
                s.add(GroupMember(group_id=g.id, user_id=u.id))
                self.record_event(s, actor, "group.add", group, name)
        self.sync_lake()  # the group's grants follow its members

    def remove_member(self, group: str, name: str, actor: str) -> None:
        with self.db.session() as s:
            g, u = self._group(s, group), self.get(s, name)
            row = s.scalar(
                select(GroupMember).where(GroupMember.group_id == g.id, GroupMember.user_id == u.id)
            )
            if row is not None:
                s.delete(row)
                self.record_event(s, actor, "group.remove", group, name)
        self.sync_lake()

    def _group(self, s: Session, name: str) -> Group:
        g = s.scalar(select(Group).where(Group.name == name))
        if g is None:
            raise UserError(f"no group named {name!r}", 404)
        return g

    # audit ---------------------------------------------------------------------------------
    def events(self, limit: int = 100) -> list[Event]:
        with self.db.session() as s:
            return list(s.scalars(select(Event).order_by(Event.id.desc()).limit(limit)))

    def audit(self, actor: str, action: str, target: str, detail: str = "") -> None:
        """An event of something done outside the database (e.g. in JupyterHub)."""
        with self.db.session() as s:
            self.record_event(s, actor, action, target, detail)

    @staticmethod
    def record_event(s: Session, actor: str, action: str, target: str, detail: str = "") -> None:
        s.add(Event(actor=actor, action=action, target=target, detail=detail))
        s.info["changed"] = True  # the database's ``on_change`` hooks run once it commits
