"""Environment variables a user sets for their notebook servers; any of them may be secret.

Each user's variables are their own: nobody else lists, reads or deletes them, administrators
included. Every value is encrypted with the hub's vault key, secret or not; a secret value is
never returned by a listing (only that it is set) and reaches only the user's own servers'
environment. The audit trail records names, never values. Names LakeHub sets itself are refused,
and :meth:`EnvVars.environment` drops them again, so LakeHub's own variables always win.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lakehub.server.db import EnvVar, User, utcnow
from lakehub.server.identity.users import Directory, UserError
from lakehub.server.schema import Instant

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_NAME = 128
MAX_VALUE = 32 * 1024  # bytes (UTF-8), per value
MAX_TOTAL = 256 * 1024  # bytes, all of a user's values: an environment must fit in exec()
MAX_VARS = 100
RESERVED_PREFIXES = ("AWS_", "LAKEHUB_", "JUPYTERHUB_", "JPY_", "LD_", "PYTHON")
RESERVED_NAMES = frozenset(
    {
        "S3_ENDPOINT_URL",
        "PATH",
        "HOME",
        "USER",
        "SHELL",
        "VIRTUAL_ENV",
        "MEM_LIMIT",
        "MEM_GUARANTEE",
        "CPU_LIMIT",
        "CPU_GUARANTEE",
    }
)


class EnvVarView(BaseModel):
    """A variable as listings show it: its value is null for a secret one."""

    model_config = ConfigDict(frozen=True)

    name: str
    secret: bool
    value: str | None = Field(description="null for a secret variable: its value is never shown")
    created_at: Instant
    updated_at: Instant

    def __repr__(self) -> str:
        shown = "<secret>" if self.secret else repr(self.value)
        return f"EnvVarView({self.name!r}, {shown})"


def check_name(name: str) -> str:
    """``name`` if users may set it, else a :class:`UserError` that says why not."""
    if not name:
        raise UserError("the variable's name is missing")
    if len(name) > MAX_NAME:
        raise UserError(f"variable names have at most {MAX_NAME} characters")
    if not NAME_RE.match(name):
        raise UserError(
            f"invalid variable name {name!r}: letters, digits and '_', not starting with a digit"
        )
    upper = name.upper()
    if upper in RESERVED_NAMES or upper.startswith(RESERVED_PREFIXES):
        raise UserError(f"{name} is set by LakeHub itself and cannot be changed")
    return name


def check_value(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise UserError(f"the value of {name} is missing or not a string")
    if "\x00" in value:
        raise UserError(
            f"the value of {name} contains a NUL character, which no environment can hold"
        )
    if len(value.encode()) > MAX_VALUE:
        raise UserError(f"the value of {name} is longer than {MAX_VALUE // 1024} KiB")
    return value


class EnvVars:
    """Per-user environment variables for notebook servers (new values apply at the next start)."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.db = directory.db
        self.vault = directory.vault

    def set(
        self,
        owner: str,
        name: str,
        value: object,
        *,
        secret: bool = False,
        actor: str | None = None,
    ) -> EnvVarView:
        """Create or replace ``name`` (its value and whether it is secret)."""
        check_name(name)
        plain = check_value(name, value)
        try:
            return self._set(owner, name, plain, bool(secret), actor or owner)
        except IntegrityError:  # the same name created at the same moment by another request
            raise UserError(
                f"{name} was changed by another request at the same time; try again", 409
            ) from None

    def _set(self, owner: str, name: str, plain: str, secret: bool, actor: str) -> EnvVarView:
        with self.db.session() as s:
            user = self._owner(s, owner)
            rows = list(s.scalars(select(EnvVar).where(EnvVar.owner_id == user.id)))
            row = next((r for r in rows if r.name == name), None)
            others = [r for r in rows if r is not row]
            if row is None and len(others) >= MAX_VARS:
                raise UserError(f"you already have {MAX_VARS} variables; delete one first")
            total = len(plain.encode()) + sum(
                len(self.vault.decrypt(r.value_enc).encode()) for r in others
            )
            if total > MAX_TOTAL:
                raise UserError(
                    f"your variables' values would exceed {MAX_TOTAL // 1024} KiB "
                    "in all; delete or shorten some first"
                )
            if row is None:
                row = EnvVar(owner_id=user.id, name=name)
                s.add(row)
            row.value_enc = self.vault.encrypt(plain)
            row.secret = secret
            row.updated_at = utcnow()
            s.flush()
            self.directory.record_event(
                s, actor, "env.set", f"{owner}/{name}", "secret" if secret else ""
            )
            return self._view(row)

    def owned_by(self, owner: str) -> list[EnvVarView]:
        with self.db.session() as s:
            user = self._owner(s, owner)
            rows = s.scalars(select(EnvVar).where(EnvVar.owner_id == user.id).order_by(EnvVar.name))
            return [self._view(r) for r in rows]

    def delete(self, owner: str, name: str, actor: str | None = None) -> None:
        with self.db.session() as s:
            user = self._owner(s, owner)
            row = s.scalar(select(EnvVar).where(EnvVar.owner_id == user.id, EnvVar.name == name))
            if row is None:
                raise UserError(f"no variable named {name!r}", 404)
            s.delete(row)
            self.directory.record_event(s, actor or owner, "env.delete", f"{owner}/{name}")

    def environment(self, owner: str) -> dict[str, str]:
        """Every variable with its plain value: for the spawner only (reserved names dropped)."""
        with self.db.session() as s:
            user = s.scalar(select(User).where(User.name == owner))
            if user is None:
                return {}
            rows = list(s.scalars(select(EnvVar).where(EnvVar.owner_id == user.id)))
            env: dict[str, str] = {}
            for r in rows:
                try:
                    check_name(r.name)
                except UserError:
                    continue  # reserved since it was set: LakeHub's own wins
                env[r.name] = self.vault.decrypt(r.value_enc)
            return env

    # helpers -------------------------------------------------------------------------------
    def _owner(self, s: Session, owner: str) -> User:
        user = s.scalar(select(User).where(User.name == owner))
        if user is None or user.status != "active":
            raise UserError(f"no active user named {owner!r}", 404)
        return user

    def _view(self, r: EnvVar) -> EnvVarView:
        value = None if r.secret else self.vault.decrypt(r.value_enc)
        return EnvVarView(
            name=r.name,
            secret=r.secret,
            value=value,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
